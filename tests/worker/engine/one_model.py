"""One model's view of a one-model GroupTrainer: the compiled training step the engine runs, driven window by window."""

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams
from worker.engine.group_model import GroupTrainer


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
            xs[:, None],
            ys[:, None],
            start,
            count,
            state[None],
            losses[:, None],
            tf.constant([self.params.learning_rate]),
            tf.constant([True]),
        )
        return state[0], losses[:, 0], probs[0]
