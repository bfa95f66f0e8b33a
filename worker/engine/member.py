"""One model's bookkeeping inside a group: its random streams, losses, reports, checkpoints and result."""

from collections.abc import Mapping
from typing import Any

import numpy as np

from contract.params import TrainingParams
from worker.engine.checkpoint import Checkpoint, Window
from worker.engine.data import generate_epoch
from worker.engine.evaluate import HeldOutScores
from worker.engine.model import initial_weights
from worker.engine.results import StepReport, TrainingResult


class GroupMember:
    """A model of a group (a job, or a sweep's trial); it draws its weights and data from its own seed exactly as a job does."""

    def __init__(self, params: TrainingParams):
        assert params.seed is not None, "a trial's parameters are resolved (a concrete seed)"
        self.params = params
        self.rng = np.random.default_rng(params.seed)
        self.eval_rng = np.random.default_rng([params.seed, 1])
        self.init = initial_weights(self.rng, params)  # drawn first, as a job draws them
        self.losses = np.zeros(params.total_steps, np.float32)
        self.epoch_losses: list[float] = []
        self.accuracies: list[float] = []
        self.epoch_seconds: list[float] = []
        self.reported = 0  # global steps already handed to on_progress
        self.stopped_early: int | None = None
        self.pruned: int | None = None  # the rung at which a halving group stopped it
        self.rungs: list[dict] = []  # its held-out scores at each rung (halving.score_dict)
        self.frozen: tuple[dict, dict] | None = None  # its weights and accumulators, once out of the group's program
        self.epoch_rng_state: Mapping[str, Any] = self.rng.bit_generator.state
        self.last_window: Window | None = None

    @property
    def active(self) -> bool:
        """Whether the model still trains: it has neither reached its target loss nor been pruned."""
        return self.stopped_early is None and self.pruned is None

    def resume(self, checkpoint: Checkpoint, last_window: Window | None) -> None:
        """Take up the position, random streams and history a checkpoint holds."""
        self.rng.bit_generator.state = checkpoint.rng_state
        self.eval_rng.bit_generator.state = checkpoint.eval_rng_state
        self.losses[: checkpoint.step] = checkpoint.losses[: checkpoint.step]
        self.epoch_losses, self.accuracies = list(checkpoint.epoch_losses), list(checkpoint.echo_accuracy)
        self.reported = checkpoint.step
        self.last_window = last_window

    def check_target(self) -> None:
        """Stop the model once the last epoch's mean loss reached target_loss, when epochs were left."""
        target, trained = self.params.target_loss, len(self.epoch_losses)
        if (
            self.active
            and target is not None
            and trained
            and self.epoch_losses[-1] <= target
            and trained < self.params.num_epochs
        ):
            self.stopped_early = trained

    def draw_epoch(self) -> tuple[np.ndarray, np.ndarray]:
        """The next epoch's windows, [steps, batch, width] bits and labels."""
        self.epoch_rng_state = self.rng.bit_generator.state
        return generate_epoch(self.rng, self.params)

    def report(
        self,
        epoch: int,
        step: int,
        epoch_loss: float | None = None,
        accuracy: float | None = None,
        window: Window | None = None,
    ) -> StepReport:
        """The report of the steps since the previous one, up to `step`, during `epoch` (0-based)."""
        report = StepReport(
            epoch=epoch + 1,
            epochs=self.params.num_epochs,
            step=step,
            steps=self.params.total_steps,
            loss=float(self.losses[step - 1]),
            first_step=self.reported,
            losses=self.losses[self.reported : step].copy(),
            epoch_done=epoch_loss is not None,
            epoch_loss=epoch_loss,
            echo_accuracy=accuracy,
            window=window,
        )
        self.reported = step
        return report

    def checkpoint(
        self,
        epoch: int,
        done: int,
        step: int,
        state: np.ndarray,
        weights: dict[str, np.ndarray],
        accumulators: dict[str, np.ndarray],
    ) -> Checkpoint:
        """Where the model stands at the group's position; a stopped model stands where it stopped."""
        if not self.active:
            epoch, done, state = len(self.epoch_losses), 0, np.zeros_like(state)
            step = epoch * self.params.steps_per_epoch
        return Checkpoint(
            epoch=epoch,
            done=done,
            step=step,
            rng_state=self.epoch_rng_state if done else self.rng.bit_generator.state,
            eval_rng_state=self.eval_rng.bit_generator.state,
            state=state,
            weights=weights,
            accumulators=accumulators,
            losses=self.losses[:step].copy(),
            epoch_losses=list(self.epoch_losses),
            echo_accuracy=list(self.accuracies),
        )

    def result(
        self, device: str, weights: dict[str, np.ndarray], compile_seconds: float, evaluation: HeldOutScores
    ) -> TrainingResult:
        """What the model's training produced (a pruned model's evaluation: its last rung's)."""
        assert self.last_window is not None, "every trained epoch leaves its last window"
        return TrainingResult(
            params=self.params,
            device=device,
            weights=weights,
            losses=self.losses[: len(self.epoch_losses) * self.params.steps_per_epoch],
            epoch_losses=self.epoch_losses,
            echo_accuracy=self.accuracies,
            last_window=self.last_window,
            compile_seconds=compile_seconds,
            epoch_seconds=self.epoch_seconds,
            evaluation=evaluation,
            stopped_early=self.stopped_early,
            pruned=self.pruned,
            rungs=list(self.rungs),
        )
