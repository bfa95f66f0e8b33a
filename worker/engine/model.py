"""The tutorial's network: initial weights, its equations for one model, and one model's trainer."""

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams
from worker.engine.forward import WEIGHT_NAMES, contract, make_forward
from worker.engine.group_model import ADAGRAD_INITIAL_ACCUMULATOR, GroupTrainer, stacked_states

__all__ = ["ADAGRAD_INITIAL_ACCUMULATOR", "WEIGHT_NAMES", "Trainer", "cell_states", "initial_weights", "logits_of",
           "make_forward"]


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
    """Run tanh(concat(x_t, state) · W + b) over a window, as training does (the group of one); [batch, T, S]."""
    return stacked_states(W[None], b[None], x[None], state[None])[0]


def logits_of(W2: tf.Tensor, b2: tf.Tensor, states: tf.Tensor) -> tf.Tensor:
    """The fully connected layer from every state to the classes, as training computes it."""
    return contract(states[None], W2[None])[0] + b2


class Trainer:
    """One model's view of a one-model GroupTrainer: unstacked weights, windows [steps, B, T], state [B, S]."""

    def __init__(self, params: TrainingParams, group: GroupTrainer):
        self.params, self.group = params, group

    @classmethod
    def create(cls, params: TrainingParams, init: dict[str, np.ndarray], device: str = "") -> "Trainer":
        """Variables from initial weights, Adagrad accumulators at their initial value (compiled once per shapes)."""
        return cls(params, GroupTrainer.create(params, [init], device))

    @property
    def weights(self) -> list[tf.Tensor]:
        """The current weights, in WEIGHT_NAMES order."""
        return [w[0] for w in self.group.weights]

    @property
    def accumulators(self) -> list[tf.Tensor]:
        """The current Adagrad accumulators, in WEIGHT_NAMES order."""
        return [a[0] for a in self.group.accumulators]

    def weight_values(self) -> dict[str, np.ndarray]:
        """The current weights as NumPy arrays."""
        return {n: w[0] for n, w in self.group.weight_values().items()}

    def accumulator_values(self) -> dict[str, np.ndarray]:
        """The current Adagrad accumulators as NumPy arrays."""
        return {n: a[0] for n, a in self.group.accumulator_values().items()}

    def restore(self, weights: dict[str, np.ndarray], accumulators: dict[str, np.ndarray]) -> None:
        """Set weights and accumulators, as a checkpoint holds them."""
        self.group.restore({n: v[None] for n, v in weights.items()}, {n: v[None] for n, v in accumulators.items()})

    def run_windows(self, xs, ys, start, count, state, losses) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Train windows start..start+count of an epoch; returns state, losses, last window's probabilities."""
        state, losses, probs = self.group.run_windows(
            xs[:, None], ys[:, None], start, count, state[None], losses[:, None],
            tf.constant([self.params.learning_rate]), tf.constant([True]),
        )
        return state[0], losses[:, 0], probs[0]
