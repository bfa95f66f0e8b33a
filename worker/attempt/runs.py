"""The MLflow runs of an attempt's trials: a job's own run, or a group's child runs under the sweep's run.

Every call a run makes to MLflow is guarded by the attempt's leases: once they are lost, it sends
nothing more and leaves the runs open for the attempt that took the jobs over.
"""

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from contract.fence import LeaseLost
from contract.job import Job
from worker.retry import RedisUnavailable
from worker.settings import WorkerSettings
from worker.tracking.mlflow_retry import MlflowUnavailable
from worker.tracking.tracked_run import TrackedRun

log = logging.getLogger(__name__)
# A group's runs share this many calls to MLflow at once: 32 senders at once exhaust the tracking
# server's database connections (SQLAlchemy's pool of 5 + 10 answers 400 after 30 s).
MLFLOW_CALLS_AT_ONCE = 4
RUN_STATUS = {"succeeded": "FINISHED", "cancelled": "KILLED", "failed": "FAILED"}


def open_runs(
    settings: WorkerSettings,
    jobs: list[Job],
    parent_run_id: str | None,
    guard: Callable[[], None],
    experiment_id: str | None = None,
) -> list[TrackedRun]:
    """Each trial's run (reopened when its record names one), a few at once; a group's in its parent's experiment
    (experiment_id), each a request to create it, its parameters sent with its first points.

    Should one fail to open, what becomes of those opened depends on why: the attempt left to
    another worker (Redis away, the lease lost) or MLflow gone past its limit leaves them open;
    any other failure ends the attempt: they are closed FAILED.
    """
    gate = threading.BoundedSemaphore(MLFLOW_CALLS_AT_ONCE) if parent_run_id else None

    def open_run(job: Job) -> TrackedRun:
        tags = None
        if parent_run_id and job.sweep is not None:
            tags = {
                "mlflow.parentRunId": parent_run_id,
                "sweep_id": job.sweep.sweep_id,
                "trial": str(job.sweep.trial),
                "mlflow.runName": f"trial-{job.sweep.trial}",
            }
        return TrackedRun(
            settings,
            job.id,
            job.params,
            run_id=job.mlflow.run_id if job.mlflow else None,
            tags=tags,
            gate=gate,
            guard=guard,
            experiment_id=experiment_id,
            params_later=parent_run_id is not None,
        )

    with ThreadPoolExecutor(8, thread_name_prefix="runs") as pool:  # a round trip or two each
        opening = [pool.submit(open_run, job) for job in jobs]
        errors = [f.exception() for f in opening]  # waits for each
        error = next((e for e in errors if e is not None), None)
        if error is None:
            return [f.result() for f in opening]
        opened = [f.result() for f, e in zip(opening, errors) if e is None]
        if isinstance(error, (LeaseLost, RedisUnavailable, MlflowUnavailable)):
            for run in opened:
                run.abandon()
        else:
            list(pool.map(lambda run: close(run, "FAILED"), opened))
    raise error


def close(run: TrackedRun, status: str) -> str | None:
    """Close a run (FINISHED, KILLED or FAILED) once its points are sent; the error's text when it could not."""
    if run.ended is not None:
        return None
    try:
        run.end(status)
        return None
    except LeaseLost:
        raise
    except Exception as exc:
        log.warning("could not close the run %s %s", run.run_id, status, exc_info=True)
        return f"{type(exc).__name__}: {exc}"


def close_quietly(run: TrackedRun, status: str) -> None:
    """close, off the attempt's thread: what fails here (a lost lease too) the attempt meets on its own path."""
    with contextlib.suppress(LeaseLost):
        close(run, status)


def close_all(runs: list[TrackedRun], statuses: list[str]) -> list[str | None]:
    """Close runs side by side (each waits on its last points); each one's error, if any."""
    with ThreadPoolExecutor(8, thread_name_prefix="run-ends") as pool:
        return list(pool.map(close, runs, statuses))
