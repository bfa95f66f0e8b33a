"""The engine's progress callback: the job record, and each metric point to MLflow exactly once."""

import numpy as np

from worker.engine.checkpoint import Checkpoint
from contract.job_store import JobStore
from worker.retry import BestEffort, redis_transient
from worker.run_logger import RunLogger


class ProgressWriter:
    """Updates the job record and streams losses, epoch metrics and figures to the job's run.

    A resumed job replays steps its run may already hold; points below what the run holds are
    not sent again, so the run's history has every step once.
    """

    def __init__(self, store: JobStore, job_id: str, tracker: RunLogger, steps: int, best_effort: BestEffort | None = None):
        self.store, self.job_id, self.tracker = store, job_id, tracker
        # Progress is overwritten by the next report: while Redis is away it is skipped, not waited for.
        self.best_effort = best_effort or BestEffort("Redis", redis_transient)
        self.fraction = 0.0
        self.metrics: dict = {}
        self.losses = np.zeros(steps, np.float32)
        self.loss_from = self.epochs_from = 0

    def catch_up(self, checkpoint: Checkpoint | None) -> None:
        """On resume: send what the checkpoint has and the run lacks; skip what the run has."""
        logged_losses = self.tracker.logged_count("loss")
        logged_epochs = self.tracker.logged_count("epoch_loss")
        if checkpoint is not None:
            self.losses[: checkpoint.step] = checkpoint.losses[: checkpoint.step]
            if logged_losses < checkpoint.step:
                self.tracker.add("loss", checkpoint.losses[logged_losses : checkpoint.step], logged_losses)
            for i in range(logged_epochs, len(checkpoint.epoch_losses)):
                self.tracker.add("epoch_loss", [checkpoint.epoch_losses[i]], i + 1)
                self.tracker.add("echo_accuracy", [checkpoint.echo_accuracy[i]], i + 1)
            logged_losses = max(logged_losses, checkpoint.step)
            logged_epochs = max(logged_epochs, len(checkpoint.epoch_losses))
        self.loss_from, self.epochs_from = logged_losses, logged_epochs

    def __call__(self, p) -> None:
        self.losses[p.first_step : p.first_step + len(p.losses)] = p.losses
        skip = max(0, self.loss_from - p.first_step)
        if skip < len(p.losses):
            self.tracker.add("loss", p.losses[skip:], p.first_step + skip)
        if p.epoch_done:
            if p.epoch > self.epochs_from:
                self.tracker.add("epoch_loss", [p.epoch_loss], p.epoch)
                self.tracker.add("echo_accuracy", [p.echo_accuracy], p.epoch)
            self.metrics.update(epoch_loss=p.epoch_loss, echo_accuracy=p.echo_accuracy)
        if p.window is not None:
            self.tracker.add_figure(self.losses[: p.step].copy(), p.window, p.step)
        self.metrics["loss"] = p.loss
        if p.step / p.steps < self.fraction:  # replaying after a resume: progress never goes back
            self.best_effort.call(lambda: self.store.update(self.job_id, metrics=self.metrics), "recording progress")
            return
        self.fraction = p.step / p.steps
        progress = {"epoch": p.epoch, "epochs": p.epochs, "step": p.step, "steps": p.steps, "fraction": self.fraction}
        self.best_effort.call(lambda: self.store.update(self.job_id, progress=progress, metrics=self.metrics), "recording progress")
