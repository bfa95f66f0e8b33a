"""The engine's progress callback: the job record, and each metric point to MLflow exactly once.

The run's `loss` holds at most max_points points: each the mean of a bucket of consecutive steps,
stamped with the bucket's last step (with `loss_min` and `loss_max` of the bucket beside it once
steps are bucketed), so a chart of any job looks the same and the tracking server stores
thousands of rows, not hundreds of thousands. A job with no more steps than that logs every step.
Every step's loss goes to the run's artifact loss_history.csv.gz at the end. A sweep's trial sends
the bucket means alone (spread=False): the tracking server's time grows with the points sent, and a
sweep sends every trial's at once; each bucket's spread is in the trial's loss_history.csv.gz.
"""

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.engine.checkpoint import Checkpoint
from worker.retry import BestEffort, redis_transient
from worker.tracking.tracked_run import TrackedRun

if TYPE_CHECKING:  # the engine's results import TensorFlow
    from worker.engine.results import StepReport


class ProgressWriter:
    """Updates the job record and streams losses, epoch metrics and figures to the job's run.

    record(fields) writes fields of the job's record (through the attempt's fence). A resumed job
    replays steps its run may already hold; buckets the run holds are not sent again, so the
    run's history has every bucket once.
    """

    def __init__(
        self,
        record: Callable[[dict[str, Any]], None],
        tracker: TrackedRun,
        steps: int,
        best_effort: BestEffort | None = None,
        max_points: int = 2000,
        record_every_s: float = 0.0,
        spread: bool = True,
    ):
        self.record, self.tracker, self.spread = record, tracker, spread
        # Progress is overwritten by the next report: while Redis is away it is skipped, not waited for.
        self.best_effort = best_effort or BestEffort("Redis", redis_transient)
        self.fraction = 0.0
        self.metrics: dict = {}
        self.losses = np.zeros(steps, np.float32)
        self.bucket = max(1, math.ceil(steps / max_points))
        self.buckets_sent = self.epochs_from = 0
        self.record_every_s, self.recorded = record_every_s, 0.0  # when the record was last written (monotonic)
        self.progress: dict | None = None
        self.behind = False  # whether the record lags the last report

    def catch_up(self, checkpoint: Checkpoint | None) -> None:
        """On resume: send what the checkpoint has and the run lacks; skip what the run has."""
        self.buckets_sent = self.tracker.logged_count("loss")
        logged_epochs = self.tracker.logged_count("epoch_loss")
        if checkpoint is not None:
            self.losses[: checkpoint.step] = checkpoint.losses[: checkpoint.step]
            self._send_buckets(checkpoint.step)
            for i in range(logged_epochs, len(checkpoint.epoch_losses)):
                self.tracker.add("epoch_loss", [checkpoint.epoch_losses[i]], i + 1)
                self.tracker.add("echo_accuracy", [checkpoint.echo_accuracy[i]], i + 1)
            logged_epochs = max(logged_epochs, len(checkpoint.epoch_losses))
        self.epochs_from = logged_epochs

    def _send_buckets(self, known: int, final: bool = False) -> None:
        """Send the buckets whose steps all lie below known (and, when final, the last partial one)."""
        k = self.bucket
        end = math.ceil(known / k) if final else known // k
        if end <= self.buckets_sent:
            return
        first, last = self.buckets_sent * k, min(end * k, known)
        spans = self.losses[first:last]
        if k == 1:
            self.tracker.add("loss", spans, first)
        else:
            padded = np.full((end - self.buckets_sent) * k, np.nan, np.float32)
            padded[: len(spans)] = spans
            rows = padded.reshape(-1, k)
            # The last partial bucket is stamped with the last step trained, not its full bucket's end.
            steps = np.minimum(np.arange(self.buckets_sent + 1, end + 1) * k, known) - 1
            spread = (("loss_min", np.nanmin(rows, 1)), ("loss_max", np.nanmax(rows, 1))) if self.spread else ()
            for key, values in (("loss", np.nanmean(rows, 1)), *spread):
                full = values[: len(values) - (steps[-1] != end * k - 1)]
                if len(full):
                    self.tracker.add(key, full, int(steps[0]), k)
                if len(full) < len(values):
                    self.tracker.add(key, values[-1:], int(steps[-1]))
        self.buckets_sent = end

    def finish(self, trained: int) -> None:
        """The training's end: send the last, partial bucket of the trained steps."""
        self._send_buckets(trained, final=True)
        if self.behind:
            self._record()

    def __call__(self, p: "StepReport") -> None:
        """One report of the engine: its losses, and the records and points they make due."""
        self.losses[p.first_step : p.first_step + len(p.losses)] = p.losses
        self._send_buckets(p.step)
        if p.epoch_done:
            assert p.epoch_loss is not None and p.echo_accuracy is not None, "an epoch's end carries its scores"
            if p.epoch > self.epochs_from:
                self.tracker.add("epoch_loss", [p.epoch_loss], p.epoch)
                self.tracker.add("echo_accuracy", [p.echo_accuracy], p.epoch)
            self.metrics.update(epoch_loss=p.epoch_loss, echo_accuracy=p.echo_accuracy)
        if p.window is not None:
            self.tracker.add_figure(self.losses[: p.step].copy(), p.window, p.step)
        self.metrics["loss"] = p.loss
        if p.step / p.steps < self.fraction:  # replaying after a resume: progress never goes back
            self.best_effort.call(lambda: self.record({"metrics": self.metrics}), "recording progress")
            return
        self.fraction = p.step / p.steps
        self.progress = {
            "epoch": p.epoch,
            "epochs": p.epochs,
            "step": p.step,
            "steps": p.steps,
            "fraction": self.fraction,
        }
        # The engine reports about every 50 ms (and at every epoch's end): the record is written at
        # most every record_every_s, at the last step, and by finish().
        self.behind = p.step < p.steps and time.monotonic() - self.recorded < self.record_every_s
        if not self.behind:
            self._record()

    def _record(self) -> None:
        self.recorded, self.behind = time.monotonic(), False
        self.best_effort.call(
            lambda: self.record({"progress": self.progress, "metrics": self.metrics, "phase": "training"}),
            "recording progress",
        )
