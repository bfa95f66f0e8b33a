"""Running one job: claim it, train (or resume), log to MLflow, register the model, record one outcome."""

import logging
import time
from dataclasses import asdict
from concurrent.futures import ThreadPoolExecutor

from contract import clock, provenance
from contract.clock import now
from contract.job import Job
from contract.job_store import JobStore
from contract.params import TrainingParams
from worker import champion
from worker.checkpoint_store import CheckpointStore
from worker.job_claim import claim
from worker.lease import LeaseKeeper, LeaseLost
from worker.progress_writer import ProgressWriter
from worker.retry import BestEffort, Outage, RedisUnavailable, redis_outage, redis_transient
from worker.run_logger import RunLogger, loss_history_csv
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
RECORD_EVERY_S = 0.1  # the engine reports every ~50 ms; the job's record needs no more than this


class JobTimeLimit(Exception):
    """The job ran past its time limit."""


class WorkerLost(Exception):
    """The job lost its worker too many times."""


def run_job(store: JobStore, settings: WorkerSettings, job_id: str, params: dict) -> str:
    """Train the job if this delivery may run it, resuming it if a lost worker had started it; returns the outcome.

    The job's record is written through Redis retries: its start and end wait for a Redis that
    is down (up to settings.redis_retry_s); progress, cancel checks and checkpoints are skipped
    while it is away, and training goes on. A job whose lease is lost, or whose end cannot be
    recorded, is left running for another worker to take over: it never gets two outcomes.
    """
    redis_retry = redis_outage(settings.redis_url, settings.redis_retry_s)
    claimed = claim(store, job_id, settings.lease_ttl_s, redis_retry)
    if claimed.lease is None:
        log.info("job %s: delivery %s, nothing run", job_id, claimed.outcome)
        return claimed.outcome
    keeper = LeaseKeeper(store.redis, store.lease_key(job_id), claimed.lease).start()
    job = redis_retry.call(lambda: store.get(job_id), "reading the job")
    log.info("job %s %s (attempt %d)", job_id, claimed.outcome, claimed.attempts)
    checkpoints = CheckpointStore(store.redis, store.prefix)
    tracker = None
    try:
        tracker = RunLogger(settings, job_id, params, run_id=job.mlflow.run_id if job.mlflow else None)
        link = {"experiment_id": tracker.experiment_id, "run_id": tracker.run_id, "url": tracker.url}
        redis_retry.call(lambda: store.update(job_id, mlflow=link), "recording the MLflow run")
        if claimed.attempts - 1 >= settings.max_worker_losses:  # rejecting on worker loss must not loop forever
            raise WorkerLost(f"the worker running this job was lost {claimed.attempts - 1} times; giving up")
        training = TrainingParams.model_validate(params)
        outcome = _train(store, checkpoints, settings, job, training, tracker, claimed.outcome == "resumed", redis_retry, keeper)
    except (LeaseLost, RedisUnavailable) as exc:
        log.error("job %s left for another worker to take over: %s", job_id, exc)
        if tracker is not None and tracker.ended is None:
            tracker.abandon()
        keeper.stop(release=False)
        return "abandoned"
    except Exception as exc:  # any failure ends the job with a readable reason
        return _fail(store, checkpoints, job_id, tracker, exc, redis_retry, keeper)
    keeper.stop(release=True)
    return outcome


def _fail(store: JobStore, checkpoints: CheckpointStore, job_id: str, tracker: RunLogger | None, exc: Exception,
          redis_retry: Outage, keeper: LeaseKeeper) -> str:
    log.exception("job %s failed", job_id, exc_info=exc)
    if tracker is not None and tracker.ended is None:  # a run already closed FINISHED stays so
        try:
            tracker.end("FAILED")
        except Exception:
            log.exception("could not close the MLflow run of job %s", job_id)
    error = f"{type(exc).__name__}: {exc}"
    try:
        redis_retry.call(lambda: store.move(job_id, "failed", finished_at=now(), error=error, phase=None),
                         "recording the failure")
    except RedisUnavailable:
        keeper.stop(release=False)
        return "abandoned"
    BestEffort("Redis", redis_transient).call(lambda: checkpoints.delete(job_id), "deleting the checkpoint")
    keeper.stop(release=True)
    return "failed"


def _train(store: JobStore, checkpoints: CheckpointStore, settings: WorkerSettings, job: Job, training: TrainingParams,
           tracker: RunLogger, resuming: bool, redis_retry: Outage, keeper: LeaseKeeper) -> str:
    # TensorFlow is imported here, in the child process that runs the job, never before fork.
    from worker.engine import export
    from worker.engine.figure import render
    from worker.engine.train import TrainingCancelled, train_model
    from worker.model_logging import files_digest, log_and_register

    best_effort = BestEffort("Redis", redis_transient)  # shared: one outage pauses all of them
    progress = ProgressWriter(store, job.id, tracker, training.total_steps, best_effort, settings.loss_points_max,
                              RECORD_EVERY_S)
    checkpoint = None
    if resuming:
        checkpoint = redis_retry.call(lambda: checkpoints.load(job.id), "loading the checkpoint")
        progress.fraction = job.progress.fraction
        progress.catch_up(checkpoint)
        redis_retry.call(lambda: store.add_resume(job.id, checkpoint.step if checkpoint else 0), "recording the resume")
    should_stop = _stop_check(store, settings, job, training, best_effort, keeper)
    ahead = ThreadPoolExecutor(1, thread_name_prefix="export")
    serving_module = ahead.submit(export.traced, training)  # traced while the job trains
    ahead.shutdown(wait=False)
    try:
        result = train_model(training, on_progress=progress, should_stop=should_stop, resume=checkpoint,
                             on_checkpoint=lambda c: best_effort.call(lambda: checkpoints.save(job.id, c), "saving a checkpoint"))
        keeper.check()
        if not redis_retry.call(lambda: store.enter_saving(job.id), "entering the saving phase"):
            raise TrainingCancelled()  # the cancel came after the last check: it still wins
    except TrainingCancelled:
        # The job is over for its user now; its run closes once the queued points are sent.
        redis_retry.call(lambda: store.move(job.id, "cancelled", finished_at=now(), phase=None), "recording the cancellation")
        best_effort.call(lambda: checkpoints.delete(job.id), "deleting the checkpoint")
        tracker.end("KILLED")
        return "cancelled"
    progress.finish(len(result.losses))
    evaluation = asdict(result.evaluation)
    tracker.add("eval_echo_accuracy", [evaluation["echo_accuracy"]], len(result.losses))
    tracker.add("eval_loss", [evaluation["loss"]], len(result.losses))
    redis_retry.call(lambda: store.update(job.id, device=result.device, evaluation=evaluation,
                                          stopped_early=result.stopped_early), "recording the device and evaluation")
    # The final figure, the model and the last metric points go to MLflow side by side.
    tracker.log_artifacts_later(lambda: {
        "echo_figure.png": render(result.losses, *result.last_window), "loss_history.csv.gz": loss_history_csv(result.losses)})
    # A job started from the queue (not resumed) has no version yet: no need to look for one.
    model = log_and_register(tracker.client, tracker.run_id, job.id, result, settings.registered_model, tracker.outage,
                             serving_module.result(), not resuming, tracker.experiment_id)
    # Logged here: the digest of the files it wrote; logged by a lost worker: read back from the store.
    digest = model.pop("digest", None) or files_digest(tracker.client, model["name"], model["version"], tracker.outage)
    redis_retry.call(lambda: provenance.record(store.redis, store.prefix, provenance.Provenance(
        model["name"], model["version"], job.id, tracker.run_id, digest)), "recording the model's provenance")
    promotion = champion.gate(tracker.client, store.redis, f"{store.prefix}:champion-lock", model["name"], model["version"],
                              evaluation["echo_accuracy"], evaluation["loss"], settings.champion_min_accuracy,
                              settings.champion_alias, tracker.outage, fresh=not resuming)
    model = {**model, "promoted": promotion.promoted, "promotion": promotion.reason}
    keeper.check()
    tracker.end("FINISHED")
    # MLflow first, then Redis: should Redis stay away past its limit, the record stays running and
    # the job is taken over (its model logging and registration are idempotent), never FAILED.
    redis_retry.call(lambda: store.move(job.id, "succeeded", finished_at=now(), model=model, phase=None),
                     "recording the success")
    best_effort.call(lambda: checkpoints.delete(job.id), "deleting the checkpoint")
    log.info("job %s succeeded: %s", job.id, model["uri"])
    return "succeeded"


def _stop_check(store: JobStore, settings: WorkerSettings, job: Job, training: TrainingParams,
                best_effort: BestEffort, keeper: LeaseKeeper):
    """The engine's cancel check: a lost lease, a user's cancel request, or the job's time limit passed."""
    limit = min(training.time_limit_s or settings.max_job_seconds, settings.max_job_seconds)
    started = clock.parse(job.started_at or now())

    def should_stop() -> bool:
        keeper.check()
        if time.time() - started > limit:
            raise JobTimeLimit(f"the job ran past its time limit of {limit} s")
        # While Redis is away no cancel request can be read: training goes on.
        return bool(best_effort.call(lambda: store.cancel_requested(job.id), "checking for a cancel request", False))

    return should_stop
