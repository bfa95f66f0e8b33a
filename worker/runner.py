"""Running one job: claim it, train, log to MLflow, register the model, record the outcome."""

import logging

import numpy as np

from worker.jobs import JobStore, now
from worker.params import TrainingParams
from worker.settings import WorkerSettings
from worker.tracking import RunLogger, loss_history_csv

log = logging.getLogger(__name__)


def run_job(store: JobStore, settings: WorkerSettings, job_id: str, params: dict) -> str:
    """Train the job if it is still wanted; returns its final status."""
    if not store.transition(job_id, {"queued", "running"}, status="running", started_at=now()):
        log.info("job %s is no longer queued; not running it", job_id)
        return "skipped"
    log.info("job %s started", job_id)
    tracker = None
    try:
        # TensorFlow is imported here, in the child process that runs the job, never before fork.
        from worker.engine.figure import render
        from worker.engine.train import TrainingCancelled, train
        from worker.registry import log_and_register

        training = TrainingParams.model_validate(params)
        tracker = RunLogger(settings, job_id, training.model_dump())
        store.update(job_id, mlflow={"experiment_id": tracker.experiment_id, "run_id": tracker.run_id, "url": tracker.url})
        progress = ProgressWriter(store, job_id, tracker, training.total_steps)
        try:
            result = train(training, on_progress=progress, should_stop=lambda: store.cancel_requested(job_id))
        except TrainingCancelled:
            # The job is over for its user now; its run closes once the queued points are sent.
            store.transition(job_id, {"running"}, status="cancelled", finished_at=now())
            tracker.end("KILLED")
            return "cancelled"
        store.update(job_id, device=result.device)
        tracker.flush()
        tracker.log_artifacts(
            {"echo_figure.png": render(result.losses, *result.last_window), "loss_history.csv": loss_history_csv(result.losses)}
        )
        model = log_and_register(tracker.client, tracker.run_id, job_id, result, settings.registered_model)
        tracker.end("FINISHED")
        store.transition(job_id, {"running"}, status="succeeded", finished_at=now(), model=model)
        log.info("job %s succeeded: %s", job_id, model["uri"])
        return "succeeded"
    except Exception as exc:  # any failure ends the job with a readable reason
        log.exception("job %s failed", job_id)
        if tracker is not None:
            try:
                tracker.end("FAILED")
            except Exception:
                log.exception("could not close the MLflow run of job %s", job_id)
        store.transition(job_id, {"running"}, status="failed", finished_at=now(), error=f"{type(exc).__name__}: {exc}")
        return "failed"


class ProgressWriter:
    """Engine progress callback: updates the job record and streams losses and figures to MLflow."""

    def __init__(self, store: JobStore, job_id: str, tracker: RunLogger, steps: int):
        self.store, self.job_id, self.tracker = store, job_id, tracker
        self.fraction = 0.0
        self.metrics: dict = {}
        self.losses = np.zeros(steps, np.float32)

    def __call__(self, p) -> None:
        self.tracker.add("loss", p.losses, p.first_step)
        self.losses[p.first_step : p.first_step + len(p.losses)] = p.losses
        if p.window is not None:
            self.tracker.add_figure(self.losses[: p.step].copy(), p.window, p.step)
        if p.epoch_done:
            self.tracker.add("epoch_loss", [p.epoch_loss], p.epoch)
            self.tracker.add("echo_accuracy", [p.echo_accuracy], p.epoch)
            self.metrics.update(epoch_loss=p.epoch_loss, echo_accuracy=p.echo_accuracy)
        self.metrics["loss"] = p.loss
        self.fraction = max(self.fraction, p.step / p.steps)
        progress = {"epoch": p.epoch, "epochs": p.epochs, "step": p.step, "steps": p.steps, "fraction": self.fraction}
        self.store.update(self.job_id, progress=progress, metrics=self.metrics)
