"""The tutorial's network and its Adagrad step, compiled so an epoch never returns to Python."""

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams

ADAGRAD_INITIAL_ACCUMULATOR = 0.1
WEIGHT_NAMES = ("W", "b", "W2", "b2")


def initial_weights(rng: np.random.Generator, params: TrainingParams) -> dict[str, np.ndarray]:
    """Biases zero; W and W2 uniform in [0, 1) as the tutorial's tf.random_uniform, or Glorot-uniform (params.init)."""
    s, c = params.state_size, params.num_classes
    draw = _glorot if params.init == "glorot" else (lambda r, shape: r.random(shape, dtype=np.float32))
    return {
        "W": draw(rng, (1 + s, s)),
        "b": np.zeros((1, s), np.float32),
        "W2": draw(rng, (s, c)),
        "b2": np.zeros((1, c), np.float32),
    }


def _glorot(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Uniform in ±sqrt(6 / (fan_in + fan_out)): zero-centred, so tanh units start in their linear range."""
    limit = np.sqrt(6.0 / sum(shape))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def cell_states(W: tf.Tensor, b: tf.Tensor, x: tf.Tensor, state: tf.Tensor) -> tf.Tensor:
    """Run tanh(concat(x_t, state) · W + b) over a window unrolled in the graph; [batch, T, S]."""
    wx, ws = W[:1], W[1:]  # concat then matmul equals the input row plus the state block
    inputs = tf.cast(x, tf.float32)
    states = []
    for t in range(x.shape[1]):
        state = tf.tanh(inputs[:, t : t + 1] * wx + tf.matmul(state, ws) + b)
        states.append(state)
    return tf.stack(states, axis=1)


def logits_of(W2: tf.Tensor, b2: tf.Tensor, states: tf.Tensor) -> tf.Tensor:
    """The fully connected layer from every state to the classes."""
    return tf.einsum("bts,sc->btc", states, W2) + b2


TRAINERS_KEPT = 4  # compiled trainers a process keeps for its next jobs
_TRAINERS: dict[tuple, "Trainer"] = {}


@dataclass
class Trainer:
    """Variables of one job and the compiled function that trains a run of windows."""

    params: TrainingParams
    weights: list[tf.Variable]
    accumulators: list[tf.Variable]

    @classmethod
    def create(cls, params: TrainingParams, init: dict[str, np.ndarray], device: str = "") -> "Trainer":
        """Variables from initial weights, Adagrad accumulators at their initial value.

        A worker process runs job after job: a trainer of the same shapes (and learning rate) is
        reused with new values in its variables, so its functions are compiled once per process.
        """
        key = (device, params.state_size, params.num_classes, params.batch_size, params.truncated_backprop_length,
               params.steps_per_epoch, params.learning_rate)
        trainer = _TRAINERS.pop(key, None)
        if trainer is None:
            weights = [tf.Variable(init[n], name=n) for n in WEIGHT_NAMES]
            accumulators = [tf.Variable(tf.zeros(w.shape), name=f"{n}_accum") for n, w in zip(WEIGHT_NAMES, weights)]
            trainer = cls(params, weights, accumulators)
            trainer.run_windows = tf.function(trainer._run_windows, jit_compile=True)
            trainer.forward = make_forward(trainer.weights)
        trainer.params = params
        trainer.restore(init, {n: np.full(init[n].shape, ADAGRAD_INITIAL_ACCUMULATOR, np.float32) for n in WEIGHT_NAMES})
        _TRAINERS[key] = trainer
        while len(_TRAINERS) > TRAINERS_KEPT:
            _TRAINERS.pop(next(iter(_TRAINERS)))
        return trainer

    def weight_values(self) -> dict[str, np.ndarray]:
        """The current weights as NumPy arrays."""
        return {n: w.numpy() for n, w in zip(WEIGHT_NAMES, self.weights)}

    def accumulator_values(self) -> dict[str, np.ndarray]:
        """The current Adagrad accumulators as NumPy arrays."""
        return {n: a.numpy() for n, a in zip(WEIGHT_NAMES, self.accumulators)}

    def restore(self, weights: dict[str, np.ndarray], accumulators: dict[str, np.ndarray]) -> None:
        """Set weights and accumulators, as a checkpoint holds them."""
        for name, var, acc in zip(WEIGHT_NAMES, self.weights, self.accumulators):
            var.assign(weights[name])
            acc.assign(accumulators[name])

    def _run_windows(self, xs, ys, start, count, state, losses):
        """Train windows start..start+count of an epoch; returns state, losses, last window's probabilities."""
        lr = tf.constant(self.params.learning_rate, tf.float32)
        batch, width = xs.shape[1], xs.shape[2]
        probs0 = tf.zeros([batch, width, self.params.num_classes])

        def body(i, state, losses, _probs):
            x, y = tf.gather(xs, start + i), tf.gather(ys, start + i)  # a slice would make start a compile-time constant
            with tf.GradientTape() as tape:
                W, b, W2, b2 = self.weights
                states = cell_states(W, b, x, state)
                logits = logits_of(W2, b2, states)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                )
            grads = tape.gradient(loss, self.weights)
            for var, acc, grad in zip(self.weights, self.accumulators, grads):
                # TF1's ApplyAdagrad: no epsilon, accumulate first.
                acc.assign_add(grad * grad)
                var.assign_sub(lr * grad * tf.math.rsqrt(acc))
            losses = tf.tensor_scatter_nd_update(losses, [[start + i]], [loss])
            return i + 1, states[:, -1], losses, tf.nn.softmax(logits)

        _, state, losses, probs = tf.while_loop(
            lambda i, *_: i < count, body, (tf.constant(0), state, losses, probs0)
        )
        return state, losses, probs


def make_forward(weights: list[tf.Variable] | list[tf.Tensor]):
    """A compiled forward pass from a zero state: [B, L] bits to [B, L, C] probabilities."""

    @tf.function(jit_compile=True)
    def forward(x):
        W, b, W2, b2 = weights
        steps = tf.transpose(tf.cast(x, tf.float32))[:, :, None] * W[:1]  # [L, B, S]
        zero = tf.zeros([tf.shape(x)[0], W.shape[1]])

        def step(state, inp):
            return tf.tanh(inp + tf.matmul(state, W[1:]) + b)

        states = tf.scan(step, steps, initializer=zero)  # [L, B, S]
        logits = tf.einsum("lbs,sc->blc", states, W2) + b2
        return tf.nn.softmax(logits)

    return forward
