"""Running one job: claim it, train (or resume), log to MLflow, register the model, record the outcome."""

import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from contract import clock
from contract.clock import now
from contract.job import Job
from contract.job_store import JobStore
from contract.params import TrainingParams
from worker.checkpoint_store import CheckpointStore
from worker.progress_writer import ProgressWriter
from worker.retry import BestEffort, Outage, redis_outage, redis_transient
from worker.settings import WorkerSettings
from worker.run_logger import RunLogger, loss_history_csv

log = logging.getLogger(__name__)


class JobTimeLimit(Exception):
    """The job ran past its time limit."""


class WorkerLost(Exception):
    """The job lost its worker too many times."""


def run_job(store: JobStore, settings: WorkerSettings, job_id: str, params: dict) -> str:
    """Train the job if it is still wanted, resuming it if a lost worker had started it; returns its final status.

    The job's record is written through Redis retries: its start and end wait for a Redis that
    is down (up to settings.redis_retry_s); progress, cancel checks and checkpoints are skipped
    while it is away, and training goes on.
    """
    redis_retry = redis_outage(settings.redis_url, settings.redis_retry_s)
    if redis_retry.call(lambda: store.move(job_id, "running", only_from={"queued"}, started_at=now()), "claiming the job"):
        resuming = False
    elif redis_retry.call(lambda: store.move(job_id, "running", only_from={"running"}), "claiming the job"):  # redelivered: its worker was lost
        resuming = True
    else:
        log.info("job %s is no longer queued; not running it", job_id)
        return "skipped"
    attempts = redis_retry.call(lambda: store.add_attempt(job_id), "counting the attempt")
    redis_retry.call(lambda: store.update(job_id, worker={"host": socket.gethostname(), "pid": os.getpid()}), "recording the worker")
    job = redis_retry.call(lambda: store.get(job_id), "reading the job")
    log.info("job %s %s (attempt %d)", job_id, "resuming" if resuming else "started", attempts)
    checkpoints = CheckpointStore(store.redis, store.prefix)
    tracker = None
    try:
        tracker = RunLogger(settings, job_id, params, run_id=job.mlflow.run_id if job.mlflow else None)
        link = {"experiment_id": tracker.experiment_id, "run_id": tracker.run_id, "url": tracker.url}
        redis_retry.call(lambda: store.update(job_id, mlflow=link), "recording the MLflow run")
        if attempts - 1 >= settings.max_worker_losses:  # rejecting on worker loss must not loop forever
            raise WorkerLost(f"the worker running this job was lost {attempts - 1} times; giving up")
        return _train(store, checkpoints, settings, job, TrainingParams.model_validate(params), tracker, resuming, redis_retry)
    except Exception as exc:  # any failure ends the job with a readable reason
        log.exception("job %s failed", job_id)
        if tracker is not None:
            try:
                tracker.end("FAILED")
            except Exception:
                log.exception("could not close the MLflow run of job %s", job_id)
        error = f"{type(exc).__name__}: {exc}"
        redis_retry.call(lambda: store.move(job_id, "failed", finished_at=now(), error=error),
                   "recording the failure")
        BestEffort("Redis", redis_transient).call(lambda: checkpoints.delete(job_id), "deleting the checkpoint")
        return "failed"


def _train(store: JobStore, checkpoints: CheckpointStore, settings: WorkerSettings, job: Job,
           training: TrainingParams, tracker: RunLogger, resuming: bool, redis_retry: Outage) -> str:
    # TensorFlow is imported here, in the child process that runs the job, never before fork.
    from worker.engine import export
    from worker.engine.figure import render
    from worker.engine.train import TrainingCancelled, train_model
    from worker.model_logging import log_and_register

    best_effort = BestEffort("Redis", redis_transient)  # shared: one outage pauses all of them
    progress = ProgressWriter(store, job.id, tracker, training.total_steps, best_effort)
    checkpoint = None
    if resuming:
        checkpoint = redis_retry.call(lambda: checkpoints.load(job.id), "loading the checkpoint")
        progress.fraction = job.progress.fraction
        progress.catch_up(checkpoint)
        redis_retry.call(lambda: store.add_resume(job.id, checkpoint.step if checkpoint else 0), "recording the resume")
    should_stop = _stop_check(store, settings, job, training, best_effort)
    ahead = ThreadPoolExecutor(1, thread_name_prefix="export")
    serving_module = ahead.submit(export.traced, training)  # traced while the job trains
    ahead.shutdown(wait=False)
    try:
        result = train_model(training, on_progress=progress, should_stop=should_stop, resume=checkpoint,
                       on_checkpoint=lambda c: best_effort.call(lambda: checkpoints.save(job.id, c), "saving a checkpoint"))
    except TrainingCancelled:
        # The job is over for its user now; its run closes once the queued points are sent.
        redis_retry.call(lambda: store.move(job.id, "cancelled", finished_at=now()),
                   "recording the cancellation")
        best_effort.call(lambda: checkpoints.delete(job.id), "deleting the checkpoint")
        tracker.end("KILLED")
        return "cancelled"
    redis_retry.call(lambda: store.update(job.id, device=result.device), "recording the device")
    # The final figure, the model and the last metric points go to MLflow side by side.
    tracker.log_artifacts_later(lambda: {
        "echo_figure.png": render(result.losses, *result.last_window), "loss_history.csv": loss_history_csv(result.losses)})
    model = log_and_register(tracker.client, tracker.run_id, job.id, result, settings.registered_model, tracker.outage,
                             serving_module.result())
    tracker.end("FINISHED")
    redis_retry.call(lambda: store.move(job.id, "succeeded", finished_at=now(), model=model),
               "recording the success")
    best_effort.call(lambda: checkpoints.delete(job.id), "deleting the checkpoint")
    log.info("job %s succeeded: %s", job.id, model["uri"])
    return "succeeded"


def _stop_check(store: JobStore, settings: WorkerSettings, job: Job, training: TrainingParams, best_effort: BestEffort):
    """The engine's cancel check: a user's cancel request, or the job's time limit passed."""
    limit = min(training.time_limit_s or settings.max_job_seconds, settings.max_job_seconds)
    started = clock.parse(job.started_at or now())

    def should_stop() -> bool:
        if time.time() - started > limit:
            raise JobTimeLimit(f"the job ran past its time limit of {limit} s")
        # While Redis is away no cancel request can be read: training goes on.
        return bool(best_effort.call(lambda: store.cancel_requested(job.id), "checking for a cancel request", False))

    return should_stop
