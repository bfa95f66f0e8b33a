"""Running one job: claim it, train (or resume), log to MLflow, register the model, record the outcome."""

import logging
import os
import socket
import time
from datetime import datetime

from worker.checkpoints import CheckpointStore
from worker.jobs import Job, JobStore, now
from worker.params import TrainingParams
from worker.progress import ProgressWriter
from worker.settings import WorkerSettings
from worker.tracking import RunLogger, loss_history_csv

log = logging.getLogger(__name__)


class JobTimeLimit(Exception):
    """The job ran past its time limit."""


class WorkerLost(Exception):
    """The job lost its worker too many times."""


def run_job(store: JobStore, settings: WorkerSettings, job_id: str, params: dict) -> str:
    """Train the job if it is still wanted, resuming it if a lost worker had started it; returns its final status."""
    if store.transition(job_id, {"queued"}, status="running", started_at=now()):
        resuming = False
    elif store.transition(job_id, {"running"}):  # redelivered: the worker that ran it was lost
        resuming = True
    else:
        log.info("job %s is no longer queued; not running it", job_id)
        return "skipped"
    attempts = store.add_attempt(job_id)
    store.update(job_id, worker={"host": socket.gethostname(), "pid": os.getpid()})
    job = store.get(job_id)
    log.info("job %s %s (attempt %d)", job_id, "resuming" if resuming else "started", attempts)
    checkpoints = CheckpointStore(store.redis, store.prefix)
    tracker = None
    try:
        tracker = RunLogger(settings, job_id, params, run_id=job.mlflow.run_id if job.mlflow else None)
        store.update(job_id, mlflow={"experiment_id": tracker.experiment_id, "run_id": tracker.run_id, "url": tracker.url})
        if attempts - 1 >= settings.max_worker_losses:  # rejecting on worker loss must not loop forever
            raise WorkerLost(f"the worker running this job was lost {attempts - 1} times; giving up")
        return _train(store, checkpoints, settings, job, TrainingParams.model_validate(params), tracker, resuming)
    except Exception as exc:  # any failure ends the job with a readable reason
        log.exception("job %s failed", job_id)
        if tracker is not None:
            try:
                tracker.end("FAILED")
            except Exception:
                log.exception("could not close the MLflow run of job %s", job_id)
        store.transition(job_id, {"running"}, status="failed", finished_at=now(), error=f"{type(exc).__name__}: {exc}")
        checkpoints.delete(job_id)
        return "failed"


def _train(store: JobStore, checkpoints: CheckpointStore, settings: WorkerSettings, job: Job,
           training: TrainingParams, tracker: RunLogger, resuming: bool) -> str:
    # TensorFlow is imported here, in the child process that runs the job, never before fork.
    from worker.engine.figure import render
    from worker.engine.train import TrainingCancelled, train
    from worker.registry import log_and_register

    progress = ProgressWriter(store, job.id, tracker, training.total_steps)
    checkpoint = None
    if resuming:
        checkpoint = checkpoints.load(job.id)
        progress.fraction = job.progress.fraction
        progress.catch_up(checkpoint)
        store.add_resume(job.id, checkpoint.step if checkpoint else 0)
    should_stop = _stop_check(store, settings, job, training)
    try:
        result = train(training, on_progress=progress, should_stop=should_stop, resume=checkpoint,
                       on_checkpoint=lambda c: checkpoints.save(job.id, c))
    except TrainingCancelled:
        # The job is over for its user now; its run closes once the queued points are sent.
        store.transition(job.id, {"running"}, status="cancelled", finished_at=now())
        checkpoints.delete(job.id)
        tracker.end("KILLED")
        return "cancelled"
    store.update(job.id, device=result.device)
    tracker.flush()
    tracker.log_artifacts(
        {"echo_figure.png": render(result.losses, *result.last_window), "loss_history.csv": loss_history_csv(result.losses)}
    )
    model = log_and_register(tracker.client, tracker.run_id, job.id, result, settings.registered_model)
    tracker.end("FINISHED")
    store.transition(job.id, {"running"}, status="succeeded", finished_at=now(), model=model)
    checkpoints.delete(job.id)
    log.info("job %s succeeded: %s", job.id, model["uri"])
    return "succeeded"


def _stop_check(store: JobStore, settings: WorkerSettings, job: Job, training: TrainingParams):
    """The engine's cancel check: a user's cancel request, or the job's time limit passed."""
    limit = min(training.time_limit_s or settings.max_job_seconds, settings.max_job_seconds)
    started = datetime.fromisoformat((job.started_at or now()).replace("Z", "+00:00")).timestamp()

    def should_stop() -> bool:
        if time.time() - started > limit:
            raise JobTimeLimit(f"the job ran past its time limit of {limit} s")
        return store.cancel_requested(job.id)

    return should_stop
