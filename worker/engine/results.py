"""What training hands out: progress reports, results, the cancel signal, and the echo check between epochs."""

from dataclasses import dataclass, field

import numpy as np

from contract.params import TrainingParams
from worker.engine.evaluate import HeldOutScores

EVAL_SEQUENCES, EVAL_LENGTH = 8, 500


class TrainingCancelled(Exception):
    """The cancel check asked the engine to stop."""


@dataclass
class StepReport:
    """Where training stands; losses holds the step losses since the previous report."""

    epoch: int  # epochs completed, or the one under way (1-based)
    epochs: int
    step: int  # steps completed over the whole job
    steps: int
    loss: float
    first_step: int  # global index of losses[0]
    losses: np.ndarray
    epoch_done: bool = False
    epoch_loss: float | None = None
    echo_accuracy: float | None = None
    # At about every tenth of the run: the last window's x, y and probabilities, for the figure.
    window: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass
class TrainingResult:
    """What a finished job produced."""

    params: TrainingParams
    device: str
    weights: dict[str, np.ndarray]
    losses: np.ndarray
    epoch_losses: list[float]
    echo_accuracy: list[float]
    last_window: tuple[np.ndarray, np.ndarray, np.ndarray]  # x, y, probabilities
    compile_seconds: float
    epoch_seconds: list[float] = field(default_factory=list)
    evaluation: HeldOutScores | None = None

    def evaluated(self) -> HeldOutScores:
        """The held-out evaluation, which train_group gives every model it trained."""
        assert self.evaluation is not None, "a trained model is evaluated"
        return self.evaluation

    stopped_early: int | None = None  # the epoch whose mean loss reached params.target_loss, if it ended the run
    pruned: int | None = None  # the rung at which a halving group stopped it
    rungs: list[dict] = field(default_factory=list)  # its held-out scores at each rung it reached
    programs: list[tuple[int, float]] = field(default_factory=list)  # the group's: each program's size, first call's s


def echo_sequences(rng: np.random.Generator) -> np.ndarray:
    """The fresh bits an echo check scores a model on: [EVAL_SEQUENCES, EVAL_LENGTH]."""
    return rng.integers(0, 2, size=(EVAL_SEQUENCES, EVAL_LENGTH), dtype=np.int32)


def echo_score(probs: np.ndarray, x: np.ndarray, echo_step: int) -> float:
    """Share of echoed bits right, at positions ≥ echo_step, given the model's probabilities on x."""
    predicted = probs.argmax(-1)[:, echo_step:]
    target = x[:, : x.shape[1] - echo_step]
    return float((predicted == target).mean())


def snapshot_epochs(num_epochs: int, count: int = 10) -> set[int]:
    """The epochs (1-based) that end each tenth of a run, the last one included."""
    return {max(1, round(num_epochs * k / count)) for k in range(1, count + 1)}
