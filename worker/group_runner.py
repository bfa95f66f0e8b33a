"""Running one group of a sweep: its trials trained together as one program, each trial a job of its own.

Each trial keeps a job's guarantees: its record moves through the same state machine, its lease is
renewed while it trains, its MLflow run (a child of the sweep's parent run) receives the same
bounded loss history, and a lost worker's group is resumed from the group's checkpoint.
"""

import logging
import time

from contract import clock
from contract.clock import now
from contract.job import FINISHED
from contract.sweep_store import SweepStore
from worker import sweep_run
from worker.checkpoint_store import CheckpointStore
from worker.group_claim import GroupClaim, claim_group
from worker.group_trials import Trials
from worker.job_runner import JobTimeLimit, WorkerLost
from worker.lease import LeaseLost
from worker.retry import BestEffort, RedisUnavailable, redis_outage, redis_transient
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def run_group(sweeps: SweepStore, settings: WorkerSettings, sweep_id: str, group: int, job_ids: list[str]) -> str:
    """Train the group's trials still to run (resuming them if a lost worker had started them); returns the outcome."""
    from worker.engine.group import GroupCheckpoint

    store = sweeps.jobs
    redis_retry = redis_outage(settings.redis_url, settings.redis_retry_s)
    taken = claim_group(store, job_ids, settings.lease_ttl_s, redis_retry)
    if taken.duplicate:
        return "duplicate"
    checkpoints = CheckpointStore(store.redis, store.prefix, GroupCheckpoint)
    checkpoint_id = f"group:{sweep_id}:{group}"
    trials = None
    try:
        if taken.job_ids:
            redis_retry.call(lambda: sweeps.move(sweep_id, "running", started_at=now()), "starting the sweep")
            parent = redis_retry.call(lambda: sweep_run.parent_run(sweeps, settings, sweep_id), "opening the sweep's run")
            trials = Trials(store, settings, taken.job_ids, parent["run_id"], redis_retry)
            if taken.attempts - 1 >= settings.max_worker_losses:
                raise WorkerLost(f"the worker running this group was lost {taken.attempts - 1} times; giving up")
            _train(sweeps, settings, sweep_id, group, trials, taken, checkpoints, checkpoint_id, redis_retry)
    except (LeaseLost, RedisUnavailable) as exc:
        log.error("sweep %s group %d left for another worker to take over: %s", sweep_id, group, exc)
        if trials is not None:
            trials.abandon()
        taken.stop(release=False)
        return "abandoned"
    except Exception as exc:  # any failure ends the group's unfinished trials with a readable reason
        log.exception("sweep %s group %d failed", sweep_id, group)
        if trials is not None:
            trials.fail(f"{type(exc).__name__}: {exc}")
        else:
            _fail_unstarted(sweeps, taken, f"{type(exc).__name__}: {exc}")
    BestEffort("Redis", redis_transient).call(lambda: checkpoints.delete(checkpoint_id), "deleting the checkpoint")
    taken.stop(release=True)
    try:
        _finish_sweep(sweeps, settings, sweep_id, group, redis_retry)
    except Exception:  # its trials have their outcomes; a delivery of the group again finishes the sweep
        log.exception("sweep %s: group %d could not finish the sweep", sweep_id, group)
    return "finished"


def _train(sweeps: SweepStore, settings: WorkerSettings, sweep_id: str, group: int, trials: "Trials", taken: GroupClaim,
           checkpoints: CheckpointStore, checkpoint_id: str, redis_retry) -> None:
    from worker.engine.group import train_group
    from worker.engine.train import TrainingCancelled

    best_effort = BestEffort("Redis", redis_transient)
    checkpoint = redis_retry.call(lambda: checkpoints.load(checkpoint_id), "loading the checkpoint") if taken.resumed else None
    if checkpoint is not None and len(checkpoint.models) != len(trials.params):
        checkpoint = None  # taken by a different set of trials: start over
    if taken.resumed:
        trials.start(checkpoint)
    should_stop = _stop_check(trials, taken, best_effort)
    try:
        results = train_group(trials.params, on_progress=trials.progress, should_stop=should_stop, resume=checkpoint,
                              on_checkpoint=lambda c: best_effort.call(lambda: checkpoints.save(checkpoint_id, c),
                                                                       "saving a checkpoint"))
    except TrainingCancelled:
        taken.check()
        trials.cancel_all()
        return
    taken.check()
    best = trials.finish(results, taken.check)
    if best is not None:
        sweep_run.record_group_best(sweeps, sweep_id, group, best)
    sweep_run.record_curves(sweeps, sweep_id, group, {t: r.losses for t, r in zip(trials.indexes, results)})


def _stop_check(trials: "Trials", taken: GroupClaim, best_effort: BestEffort):
    """The engine's cancel check: a lost lease, every trial's cancel requested, or the shortest time limit passed."""
    limit = min(min(p.time_limit_s or trials.settings.max_job_seconds for p in trials.params), trials.settings.max_job_seconds)
    started = min(clock.parse(j.started_at) if j.started_at else time.time() for j in trials.jobs)  # across deliveries

    def should_stop() -> bool:
        taken.check()
        if time.time() - started > limit:
            raise JobTimeLimit(f"the group ran past its time limit of {limit} s")
        return bool(best_effort.call(trials.all_cancel_requested, "checking for cancel requests", False))

    return should_stop


def _fail_unstarted(sweeps: SweepStore, taken: GroupClaim, error: str) -> None:
    for job_id in taken.job_ids:
        sweeps.jobs.move(job_id, "failed", finished_at=now(), error=error, phase=None)


def _finish_sweep(sweeps: SweepStore, settings: WorkerSettings, sweep_id: str, group: int, redis_retry) -> None:
    """Count the group; the last one (or a group delivered again after a finisher was lost) ends the sweep."""
    last = redis_retry.call(lambda: sweeps.group_finished(sweep_id, group), "counting the group as finished")
    record = redis_retry.call(lambda: sweeps.raw(sweep_id), "reading the sweep") or {}
    if last or (int(record.get("groups_left", 1)) <= 0 and record.get("status") not in FINISHED):
        try:
            sweep_run.finish(sweeps, settings, sweep_id)
        except (LeaseLost, RedisUnavailable):
            raise
        except Exception as exc:
            log.exception("sweep %s could not be finished", sweep_id)
            sweeps.move(sweep_id, "failed", error=f"finishing the sweep: {type(exc).__name__}: {exc}")

