"""The trials of a group as jobs: their records, child runs and progress, from start to their outcomes."""

import dataclasses
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from contract.clock import now
from contract.job import Job
from contract.job_store import JobStore
from contract.params import TrainingParams
from worker.lease import LeaseLost
from worker.mlflow_retry import MlflowUnavailable
from worker.progress_writer import ProgressWriter
from worker.retry import BestEffort, Outage, RedisUnavailable, redis_transient
from worker.run_logger import RunLogger, loss_history_csv
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
RECORD_EVERY_S = 0.5  # a trial's record is written at most this often while the group trains
# A group's runs share this many calls to MLflow at once: 32 senders at once exhaust the tracking
# server's database connections (SQLAlchemy's pool of 5 + 10 answers 400 after 30 s).
MLFLOW_CALLS_AT_ONCE = 4


class Trials:
    """One group's running trials, in the engine's model order."""

    def __init__(self, store: JobStore, settings: WorkerSettings, job_ids: list[str], parent_run_id: str,
                 redis_retry: Outage):
        """Open each trial's child run under the sweep's parent run (or reopen it, resuming)."""
        self.store, self.settings, self.redis_retry = store, settings, redis_retry
        self.gate = threading.BoundedSemaphore(MLFLOW_CALLS_AT_ONCE)
        self.jobs: list[Job] = redis_retry.call(lambda: store.get_many(job_ids), "reading the trials")
        self.params = [TrainingParams.model_validate(j.params) for j in self.jobs]
        self.indexes = [j.sweep.trial for j in self.jobs]
        self.trackers: list[RunLogger] = _open_all(self._open_run, self.jobs, parent_run_id)
        self.best_effort = BestEffort("Redis", redis_transient)  # shared: one outage pauses all of them
        self.writers = [ProgressWriter(store, j.id, t, p.total_steps, self.best_effort, settings.trial_loss_points_max,
                                       RECORD_EVERY_S)
                        for j, t, p in zip(self.jobs, self.trackers, self.params)]

    def _open_run(self, job: Job, parent_run_id: str) -> RunLogger:
        tags = {"mlflow.parentRunId": parent_run_id, "sweep_id": job.sweep.sweep_id, "trial": str(job.sweep.trial),
                "mlflow.runName": f"trial-{job.sweep.trial}"}
        tracker = RunLogger(self.settings, job.id, job.params, run_id=job.mlflow.run_id if job.mlflow else None, tags=tags,
                            gate=self.gate)
        link = {"experiment_id": tracker.experiment_id, "run_id": tracker.run_id, "url": tracker.url}
        try:
            self.redis_retry.call(lambda: self.store.update(job.id, mlflow=link), "recording the trial's run")
        except Exception:
            if job.mlflow is None:  # a new run no record names: nobody would reopen or close it
                _close(tracker)
            else:
                tracker.abandon()
            raise
        return tracker

    def start(self, checkpoint) -> None:
        """Resuming: each run gets what the group's checkpoint has (if any) and it lacks; progress never goes back."""
        models = checkpoint.models if checkpoint is not None else [None] * len(self.jobs)
        for job, writer, model in zip(self.jobs, self.writers, models):
            writer.fraction = job.progress.fraction
            writer.catch_up(model)
            self.redis_retry.call(lambda: self.store.add_resume(job.id, model.step if model else 0), "recording the resume")

    def progress(self, reports: list) -> None:
        """The engine's report for every trial: records and runs, without the per-trial figure snapshots."""
        for writer, report in zip(self.writers, reports):
            if report is not None:  # None: a trial that stopped early, at its target_loss
                writer(dataclasses.replace(report, window=None))

    def all_cancel_requested(self) -> bool:
        """Whether every trial of the group was asked to stop (a single trial's cancel ends it at the group's end)."""
        pipe = self.store.redis.pipeline()
        for job in self.jobs:
            pipe.hget(self.store.key(job.id), "cancel_requested")
        return all(raw == b"true" for raw in pipe.execute())

    def finish(self, results: list, check: Callable[[], None]) -> dict | None:
        """Record every trial's outcome; log the best one's model into its run first; returns the group's best (or None).

        check raises when this process lost the group's leases: then another worker ends the trials.
        """
        from worker.model_logging import log_model

        done = []
        for i, (job, tracker, writer, result) in enumerate(zip(self.jobs, self.trackers, self.writers, results)):
            if not self.redis_retry.call(lambda: self.store.enter_saving(job.id), "entering the saving phase"):
                done.append((i, None))  # its cancel came while the group trained: it ends cancelled
                continue
            writer.finish(len(result.losses))
            scores = dataclasses.asdict(result.evaluation)
            tracker.add("eval_echo_accuracy", [scores["echo_accuracy"]], len(result.losses))
            tracker.add("eval_loss", [scores["loss"]], len(result.losses))
            self.redis_retry.call(lambda: self.store.update(job.id, device=result.device, evaluation=scores,
                                                            stopped_early=result.stopped_early), "recording the evaluation")
            tracker.log_artifacts_later(lambda losses=result.losses: {"loss_history.csv.gz": loss_history_csv(losses)})
            done.append((i, scores))
        best = None
        scored = [(i, scores) for i, scores in done if scores is not None]
        if scored:
            i, scores = max(scored, key=lambda d: (d[1]["echo_accuracy"], -d[1]["loss"], -self.indexes[d[0]]))
            job, tracker = self.jobs[i], self.trackers[i]
            logged = log_model(tracker.client, tracker.run_id, job.id, results[i], tracker.outage)
            best = {"trial": self.indexes[i], "job_id": job.id, "run_id": tracker.run_id, "logged": logged,
                    "echo_accuracy": scores["echo_accuracy"], "loss": scores["loss"]}
        check()
        with ThreadPoolExecutor(8, thread_name_prefix="trial-ends") as pool:  # each waits on its run's last points
            list(pool.map(lambda d: self._end(d[0], "succeeded" if d[1] else "cancelled"), done))
        return best

    def _end(self, i: int, status: str, error: str | None = None) -> None:
        """Close the trial's run (MLflow first), then its record; a run that cannot be closed fails the trial."""
        try:
            self.trackers[i].end({"succeeded": "FINISHED", "cancelled": "KILLED", "failed": "FAILED"}[status])
        except Exception as exc:
            log.exception("trial %s: its run could not be closed", self.jobs[i].id)
            status, error = ("failed", f"{type(exc).__name__}: {exc}") if status == "succeeded" else (status, error)
        fields = {"error": error} if error else {}
        self.redis_retry.call(lambda: self.store.move(self.jobs[i].id, status, only_from={"running"}, finished_at=now(),
                                                      phase=None, **fields), f"recording the trial's {status}")

    def cancel_all(self) -> None:
        """Every trial was cancelled while training."""
        for i in range(len(self.jobs)):
            self._end(i, "cancelled")

    def fail(self, error: str) -> None:
        """End every trial not yet ended as failed: its record first, then (best effort) its run."""
        for i, (tracker, job) in enumerate(zip(self.trackers, self.jobs)):
            try:
                self.store.move(job.id, "failed", only_from={"running"}, finished_at=now(), error=error, phase=None)
                if tracker.ended is None:
                    tracker.end("FAILED")
            except Exception:  # Redis or MLflow away: the watchdog or the run's next reader sees the rest
                log.exception("trial %s: could not record its failure", job.id)

    def abandon(self) -> None:
        """Stop sending: another worker carries the trials on in the same runs."""
        for tracker in self.trackers:
            tracker.abandon()



def _open_all(open_run: Callable[[Job, str], RunLogger], jobs: list[Job], parent_run_id: str) -> list[RunLogger]:
    """Every trial's run, a few at once; should one fail to open, what becomes of those opened depends on why.

    The group left to another worker (Redis away, the lease lost): they stay open for it to reopen.
    MLflow gone past its limit: nothing can close them. Any other failure ends the group: closed FAILED.
    """
    with ThreadPoolExecutor(8, thread_name_prefix="child-runs") as pool:  # a round trip or two each
        opening = [pool.submit(open_run, job, parent_run_id) for job in jobs]
        errors = [f.exception() for f in opening]  # waits for each
        error = next((e for e in errors if e is not None), None)
        if error is None:
            return [f.result() for f in opening]
        opened = [f.result() for f, e in zip(opening, errors) if e is None]
        if isinstance(error, (LeaseLost, RedisUnavailable, MlflowUnavailable)):
            for tracker in opened:
                tracker.abandon()
        else:
            list(pool.map(_close, opened))
    raise error


def _close(tracker: RunLogger) -> None:
    """Close a run FAILED, best effort."""
    try:
        tracker.end("FAILED")
    except Exception:
        log.warning("could not close the trial's run %s", tracker.run_id, exc_info=True)
