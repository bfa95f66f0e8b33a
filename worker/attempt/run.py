"""Running a delivery: claim its jobs, run the attempt, and end in one place whatever happens.

Whatever stops an attempt decides what it leaves: lost leases (another worker holds its jobs now,
or it could not prove them) and a Redis away past its limit leave every record and run to the
attempt that takes over, without one more write; any other failure ends the trials failed.
"""

import logging

from contract.fence import LeaseLost
from contract.job_store import JobStore
from contract.sweep_store import SweepStore
from worker.attempt import sweep_end
from worker.attempt.attempt import Attempt, Context
from worker.attempt.claim import claim
from worker.attempt.lease import LeaseKeeper
from worker.attempt.unit import Unit
from worker.retry import Outage, RedisUnavailable, redis_outage
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def run_attempt(store: JobStore, settings: WorkerSettings, unit: Unit) -> str:
    """Train the unit's jobs if this delivery may run them, resuming them if a lost worker had started them.

    Returns the outcome: succeeded, cancelled, failed, finished (a group's mixed ends), duplicate,
    skipped, or fenced and abandoned (left for another worker: never two outcomes for one job).
    """
    redis_retry = redis_outage(settings.redis_url, settings.redis_retry_s)
    try:
        claimed = claim(store, unit.job_ids, settings.lease_ttl_s, redis_retry)
    except Exception:  # the leases taken lapse; the watchdog sends the jobs again
        log.exception("%s: the claim failed half-way; left for the watchdog", unit.label)
        return "abandoned"
    if claimed.duplicate:
        return "duplicate"
    if claimed.fence is None:
        log.info("%s: nothing left to run", unit.label)
        if not unit.is_job:
            _count_empty_group(store, settings, unit, redis_retry)
        return "skipped"
    keeper = LeaseKeeper(store.redis, claimed.fence, settings.lease_ttl_s).start(claimed.taken_at)
    log.info("%s %s (attempt %d)", unit.label, "resumed" if claimed.resumed else "started", claimed.attempts)
    attempt: Attempt | None = None
    try:
        attempt = Attempt(Context(store, settings, unit, claimed, keeper, redis_retry))
        try:
            outcome, last_group = attempt.run()
        except (LeaseLost, RedisUnavailable):
            raise
        except Exception as exc:  # noqa: BLE001 (any other failure ends the trials with a readable reason)
            outcome, last_group = "failed", attempt.fail(exc)
    except LeaseLost as exc:
        log.error("%s: this attempt lost its lease (%s); it writes nothing more", unit.label, exc)
        return _leave(attempt, keeper, "fenced")
    except RedisUnavailable as exc:
        log.error("%s left for another worker to take over: %s", unit.label, exc)
        return _leave(attempt, keeper, "abandoned")
    keeper.stop(release=False)  # the attempt's last step released the leases
    if last_group:
        _finish_sweep(store, settings, unit.sweep[0])
    return outcome


def finish_sweep(store: JobStore, settings: WorkerSettings, sweep_id: str) -> str:
    """End a sweep whose trials have all ended (the reconciler's task); its status, or why nothing was done."""
    return _finish_sweep(store, settings, sweep_id) or "nothing to do"


def _leave(attempt: Attempt | None, keeper: LeaseKeeper, outcome: str) -> str:
    if attempt is not None:
        attempt.abandon()
    keeper.stop(release=False)
    return outcome


def _count_empty_group(store: JobStore, settings: WorkerSettings, unit: Unit, redis_retry: Outage) -> None:
    """A group whose trials all ended before it ran (cancelled while queued) counts as finished all the same."""
    sweeps, (sweep_id, group) = SweepStore(store), unit.sweep
    if redis_retry.call(lambda: sweeps.group_finished(sweep_id, group), "counting the group as finished"):
        _finish_sweep(store, settings, sweep_id)


def _finish_sweep(store: JobStore, settings: WorkerSettings, sweep_id: str) -> str | None:
    try:
        return sweep_end.finish(SweepStore(store), settings, sweep_id)
    except Exception:  # its trials have their outcomes; the reconciler finishes the sweep later
        log.exception("sweep %s could not be finished now; the reconciler will try again", sweep_id)
        return None
