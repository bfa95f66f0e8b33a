"""K models of the same shapes trained as one compiled XLA loop over a leading model axis.

Every tensor carries the model axis first: weights [K, ...], a window [K, batch, width], the state
[K, batch, state_size]. The tutorial's tiny matrix products are broadcast multiplies and sums, which
XLA fuses into a few loops per time step (forward.per_model_matmul); a matmul per product costs more than its
arithmetic. One model is the group of one: a job runs the same compiled step.
"""

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams
from worker.engine.forward import WEIGHT_NAMES, make_forward, per_model_matmul, stacked_probabilities
from worker.engine.kept import kept

ADAGRAD_INITIAL_ACCUMULATOR = 0.1
TRAINERS_KEPT = 16  # compiled trainers a process keeps for its next jobs and groups (a halving group uses
# up to log2(its size) + 1 of each shape)
PADDED_WINDOWS = 1024  # an epoch's data is padded to at least this many windows (the default job has 666) …
PADDED_BYTES = 4 << 20  # … while its bits fit in this
_TRAINERS: dict[tuple, "GroupTrainer"] = {}


def stacked_states(W: tf.Tensor, b: tf.Tensor, x: tf.Tensor, state: tf.Tensor) -> tf.Tensor:
    """tanh(concat(x_t, state) · W + b) over a window unrolled in the graph: [K, B, T] bits to [K, B, T, S]."""
    wx, ws = W[:, None, 0], W[:, 1:]  # concat then product equals the input row plus the state block
    inputs = tf.cast(x, tf.float32)
    states = []
    for t in range(x.shape[2]):
        state = tf.tanh(inputs[:, :, t, None] * wx + per_model_matmul(state, ws) + b)
        states.append(state)
    return tf.stack(states, axis=2)


def _per_model(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """A [K] tensor shaped to broadcast against one of the stacked [K, ...] weights."""
    return tf.reshape(values, [-1] + [1] * (like.shape.rank - 1))


def epoch_capacity(steps: int, models: int, params: TrainingParams) -> int:
    """Windows an epoch's data is padded to: at least PADDED_WINDOWS while they fit in PADDED_BYTES, past that
    the power of two at or above steps when the padding fits in PADDED_BYTES, else steps itself.

    XLA compiles the training loop once per input shape: padded, jobs whose series lengths
    differ share a compilation (2–3 s each) instead of paying one per length.
    """
    window_bytes = models * params.batch_size * params.truncated_backprop_length * 4
    floor = min(PADDED_WINDOWS, 1 << max(0, (PADDED_BYTES // window_bytes).bit_length() - 1))
    if steps <= floor:
        return floor
    power = 1 << (steps - 1).bit_length()
    return power if (power - steps) * window_bytes <= PADDED_BYTES else steps


class GroupTrainer:
    """Variables of K models and the compiled function that trains them over a run of windows."""

    def __init__(self, inits: list[dict[str, np.ndarray]]):
        self.models = len(inits)
        self.weights = [tf.Variable(np.stack([init[n] for init in inits]), name=n) for n in WEIGHT_NAMES]
        self.accumulators = [
            tf.Variable(tf.zeros(w.shape), name=f"{n}_accum") for n, w in zip(WEIGHT_NAMES, self.weights)
        ]
        self.single = [tf.Variable(inits[0][n], name=f"{n}_single") for n in WEIGHT_NAMES]  # one model at a time
        self.run_windows = tf.function(self._run_windows, jit_compile=True)
        self.forward = make_forward(self.single)

    @classmethod
    def create(cls, params: TrainingParams, inits: list[dict[str, np.ndarray]], device: str = "") -> "GroupTrainer":
        """Variables from initial weights (one dict per model), Adagrad accumulators at their initial value.

        A worker process runs job after job: a trainer of the same shapes and model count is reused
        with new values in its variables, so its functions are compiled once per process. Learning
        rates are arguments of the compiled function, so they are not part of the key.
        """
        key = (
            device,
            len(inits),
            params.state_size,
            params.num_classes,
            params.batch_size,
            params.truncated_backprop_length,
            epoch_capacity(params.steps_per_epoch, len(inits), params),
        )
        trainer = kept(_TRAINERS, key, lambda: cls(inits), TRAINERS_KEPT)
        stacked = {n: np.stack([init[n] for init in inits]) for n in WEIGHT_NAMES}
        trainer.restore(
            stacked, {n: np.full(v.shape, ADAGRAD_INITIAL_ACCUMULATOR, np.float32) for n, v in stacked.items()}
        )
        return trainer

    def weight_values(self) -> dict[str, np.ndarray]:
        """The current weights as NumPy arrays, [K, ...] each."""
        return {n: w.numpy() for n, w in zip(WEIGHT_NAMES, self.weights)}

    def accumulator_values(self) -> dict[str, np.ndarray]:
        """The current Adagrad accumulators as NumPy arrays, [K, ...] each."""
        return {n: a.numpy() for n, a in zip(WEIGHT_NAMES, self.accumulators)}

    def restore(self, weights: dict[str, np.ndarray], accumulators: dict[str, np.ndarray]) -> None:
        """Set every model's weights and accumulators ([K, ...] arrays), as checkpoints hold them."""
        for name, var, acc in zip(WEIGHT_NAMES, self.weights, self.accumulators):
            var.assign(weights[name])
            acc.assign(accumulators[name])

    def forward_for(self, weights: dict[str, np.ndarray]) -> Callable[[tf.Tensor], tf.Tensor]:
        """The compiled single-model forward pass, set to these weights (a model's, in this program or not)."""
        for name, var in zip(WEIGHT_NAMES, self.single):
            var.assign(weights[name])
        return self.forward

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Every model on its own bits from a zero state: [K, R, L] to [K, R, L, C]."""
        return stacked_probabilities(*self.weights, tf.constant(x)).numpy()

    def _run_windows(
        self,
        xs: tf.Tensor,
        ys: tf.Tensor,
        start: tf.Tensor,
        count: tf.Tensor,
        state: tf.Tensor,
        losses: tf.Tensor,
        learning_rates: tf.Tensor,
        active: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Train windows start..start+count of an epoch ([capacity, K, B, T] bits and labels, zeros past its
        steps); models where `active` is false compute but keep their weights and accumulators. Returns the
        carried state, the [capacity, K] losses and the last window's probabilities [K, B, T, C]."""
        weights = [w.read_value() for w in self.weights]
        accumulators = [a.read_value() for a in self.accumulators]
        rates = [_per_model(learning_rates, w) for w in weights]
        keep = [_per_model(active, w) for w in weights]
        shape = [*xs.shape[1:], self.weights[2].shape[-1]]

        def body(
            i: tf.Tensor,
            weights: list[tf.Tensor],
            accumulators: list[tf.Tensor],
            state: tf.Tensor,
            losses: tf.Tensor,
            _logits: tf.Tensor,
        ) -> tuple[tf.Tensor, list[tf.Tensor], list[tf.Tensor], tf.Tensor, tf.Tensor, tf.Tensor]:
            # A gather, not a slice: a slice would make start a compile-time constant.
            x, y = tf.gather(xs, start + i), tf.gather(ys, start + i)
            with tf.GradientTape() as tape:
                tape.watch(weights)
                W, b, W2, b2 = weights
                states = stacked_states(W, b, x, state)
                logits = per_model_matmul(states, W2) + b2[:, None]
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits), [1, 2])
                total = tf.reduce_sum(loss)  # the models share no weight: its gradient is each model's own
            grads = tape.gradient(total, weights)
            # TF1's ApplyAdagrad: no epsilon, accumulate first.
            accumulators = [tf.where(k, a + g * g, a) for k, a, g in zip(keep, accumulators, grads)]
            weights = [
                tf.where(k, w - lr * g * tf.math.rsqrt(a), w)
                for k, lr, w, g, a in zip(keep, rates, weights, grads, accumulators)
            ]
            losses = tf.tensor_scatter_nd_update(losses, [[start + i]], loss[None])
            return i + 1, weights, accumulators, states[:, :, -1], losses, logits

        _, weights, accumulators, state, losses, logits = tf.while_loop(
            lambda i, *_: i < count, body, (tf.constant(0), weights, accumulators, state, losses, tf.zeros(shape))
        )
        for var, value in zip(self.weights + self.accumulators, weights + accumulators):
            var.assign(value)
        return state, losses, tf.nn.softmax(logits)
