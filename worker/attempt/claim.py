"""Claiming a delivery: every job it names (a job, or a sweep group's trials) under one token, or none.

Each job's lease is taken in the same step as its move to running: a queued job starts, a running
one whose lease lapsed (or whose holder on this host died) resumes, a finished one is skipped. A
job under another attempt's live lease means the delivery is a duplicate: it is dropped.
"""

import logging
import os
import socket
import time
from dataclasses import dataclass, field

from redis.exceptions import WatchError

from contract.clock import now
from contract.fence import Fence
from contract.job_store import JobStore, LeaseGrant, LeaseHeld
from contract.redis_values import as_bytes
from worker.attempt import lease
from worker.retry import Outage

log = logging.getLogger(__name__)


@dataclass
class Claim:
    """What a delivery amounts to: the jobs this attempt runs (in the delivery's order) under its fence."""

    job_ids: list[str] = field(default_factory=list)
    fence: Fence | None = None
    resumed: bool = False
    attempts: int = 0
    duplicate: bool = False
    taken_at: float = 0.0  # when the first lease was asked for (monotonic): the leases count from then


def claim(store: JobStore, job_ids: list[str], ttl_s: float, redis_retry: Outage) -> Claim:
    """Take the lease of every job still to run; a job under another process's live lease drops the delivery.

    A claim that fails half-way leaves the leases it took to lapse: the watchdog then sends the
    jobs again. Only a claim that runs counts as an attempt of its jobs.
    """
    counts = redis_retry.call(lambda: _attempts(store, job_ids), "reading the attempts")
    token = lease.token(max(counts, default=0) + 1)
    held = LeaseGrant(token, int(ttl_s * 1000))
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    taken = Claim(taken_at=time.monotonic())
    for job_id in job_ids:
        outcome = _claim_one(store, job_id, held, worker, redis_retry)
        if outcome == "duplicate":
            log.warning("job %s runs under another attempt's live lease: dropping this delivery", job_id)
            return Claim(duplicate=True)  # the leases taken lapse; the watchdog sends the jobs again
        if outcome == "skipped":
            continue  # finished (a trial cancelled while queued): nothing to train
        taken.job_ids.append(job_id)
        taken.resumed |= outcome == "resumed"
    if not taken.job_ids:
        return taken
    taken.fence = Fence(token, tuple(store.lease_key(j) for j in taken.job_ids))
    taken.attempts = max(redis_retry.call(lambda: _count_attempts(store, taken.job_ids), "counting the attempt"))
    return taken


def _attempts(store: JobStore, job_ids: list[str]) -> list[int]:
    pipe = store.redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(store.key(job_id), "attempts")
    return [int(raw or 0) for raw in pipe.execute()]


def _claim_one(store: JobStore, job_id: str, held: LeaseGrant, worker: dict, redis_retry: Outage) -> str:
    for _ in range(2):  # a second try once a dead holder's stale lease is cleared
        try:
            if redis_retry.call(
                lambda: store.move(
                    job_id,
                    "running",
                    only_from={"queued"},
                    lease=held,
                    started_at=now(),
                    phase="starting",
                    worker=worker,
                ),
                "claiming the job",
            ):
                return "started"
            if redis_retry.call(
                lambda: store.move(
                    job_id, "running", only_from={"running"}, lease=held, phase="starting", worker=worker
                ),
                "claiming the job",
            ):
                return "resumed"
            return "skipped"
        except LeaseHeld:
            raw = as_bytes(store.redis.get(store.lease_key(job_id)))
            if raw is not None and raw.decode() == held.owner:
                return "resumed"  # this very attempt (a delivery naming a job twice)
            if not lease.holder_is_dead(raw):
                log.warning(
                    "job %s is running under a live lease (%s): dropping this duplicate delivery",
                    job_id,
                    raw.decode() if raw else "just released",
                )
                return "duplicate"
            log.warning("job %s: the process holding its lease died; taking it over", job_id)
            _delete_if_unchanged(store, store.lease_key(job_id), raw)
    return "duplicate"


def _count_attempts(store: JobStore, job_ids: list[str]) -> list[int]:
    pipe = store.redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hincrby(store.key(job_id), "attempts", 1)
        pipe.delete(store.takeover_key(job_id))
    return pipe.execute()[::2]


def _delete_if_unchanged(store: JobStore, key: str, raw: bytes | None) -> None:
    with store.redis.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.get(key) == raw:
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
        except WatchError:  # changed meanwhile: the next claim sees the new holder
            pass
