"""Claiming a delivered job: start it, resume it, or drop the delivery as a duplicate."""

import logging
import os
import socket
from dataclasses import dataclass
from typing import Literal

from redis.exceptions import WatchError

from contract.clock import now
from contract.job_store import JobStore, Lease, LeaseHeld
from worker import lease
from worker.retry import Outage
from worker.watchdog import takeover_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """What a delivery of a job amounts to, and the lease it took if it runs."""

    outcome: Literal["started", "resumed", "duplicate", "skipped"]
    lease: Lease | None = None
    attempts: int = 0


def claim(store: JobStore, job_id: str, ttl_s: float, redis_retry: Outage) -> Claim:
    """Take the job's lease with its move to running; a live lease held by another process drops the delivery.

    A queued job starts; a running one whose lease lapsed (or whose holder on this host has died)
    resumes; a finished or unknown job is skipped. Only a claim that runs counts as an attempt.
    """
    attempts = int(store.redis.hget(store.key(job_id), "attempts") or 0) + 1
    held = Lease(lease.owner(attempts), int(ttl_s * 1000))
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(2):  # a second try once a dead holder's stale lease is cleared
        try:
            if redis_retry.call(lambda: store.move(job_id, "running", only_from={"queued"}, lease=held,
                                                   started_at=now(), phase="starting", worker=worker), "claiming the job"):
                return _claimed(store, job_id, "started", held, redis_retry)
            if redis_retry.call(lambda: store.move(job_id, "running", only_from={"running"}, lease=held,
                                                   phase="starting", worker=worker), "claiming the job"):
                return _claimed(store, job_id, "resumed", held, redis_retry)
            return Claim("skipped")
        except LeaseHeld:
            raw = store.redis.get(store.lease_key(job_id))
            if not lease.holder_is_dead(raw):
                log.warning("job %s is running under a live lease (%s): dropping this duplicate delivery",
                            job_id, raw.decode() if raw else "just released")
                return Claim("duplicate")
            log.warning("job %s: the process holding its lease died; taking it over", job_id)
            _delete_if_unchanged(store, store.lease_key(job_id), raw)
    return Claim("duplicate")


def _claimed(store: JobStore, job_id: str, outcome: str, held: Lease, redis_retry: Outage) -> Claim:
    attempts = redis_retry.call(lambda: store.add_attempt(job_id), "counting the attempt")
    store.redis.delete(takeover_key(store, job_id))
    return Claim(outcome, held, attempts)


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
