"""Job records in Redis: one hash per job (a JSON value per field), a newest-first index, an index
per status and per owner and status, counts per status, and finished jobs pruned after a retention.

Every status change goes through move(), which the state machine in contract.job allows or refuses.
"""

import json
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ResponseError

from contract import job_scripts
from contract.clock import now
from contract.fence import FencedWriter
from contract.job import FINISHED, STATUSES, Job, JobProgress, sources
from contract.redis_values import hash_fields, scored, text

DEFAULT_PREFIX = "echo-rnn"  # of every Redis key of the service (CommonSettings.job_key_prefix)
DEFAULT_RETENTION_S = 30 * 24 * 3600
RECONCILER_EVENTS = ("taken_over", "resent", "sweeps_finished", "errors")  # the watchdog's counters (reconciler_key)


@dataclass(frozen=True)
class LeaseGrant:
    """Who holds a running job: the move that starts or resumes it takes the lease too."""

    owner: str
    ttl_ms: int


class LeaseHeld(Exception):
    """The job's lease is held by another owner."""


class QuotaExceeded(Exception):
    """The client already has as many queued and running jobs as it may."""


class JobStore:
    """The job records under one key prefix."""

    def __init__(self, redis: Redis, prefix: str = DEFAULT_PREFIX, retention_s: int = DEFAULT_RETENTION_S):
        self.redis, self.prefix, self.retention_s = redis, prefix, retention_s
        self._move = redis.register_script(job_scripts.MOVE)
        self._set_if = redis.register_script(job_scripts.SET_IF)
        self._create = redis.register_script(job_scripts.CREATE)
        self._owner_index = redis.register_script(job_scripts.OWNER_INDEX)
        self.fenced = FencedWriter(redis, prefix, retention_s)
        self._owner_index_built = False  # known to be built (build_owner_index)

    def key(self, job_id: str) -> str:
        """The Redis key of the job's record."""
        return f"{self.prefix}:job:{job_id}"

    def lease_key(self, job_id: str) -> str:
        """The Redis key of the job's lease."""
        return f"{self.prefix}:lease:{job_id}"

    def takeover_key(self, job_id: str) -> str:
        """The key that marks a job as sent to the queue again by the watchdog (not again before it expires)."""
        return f"{self.prefix}:takeover:{job_id}"

    def reconciler_key(self) -> str:
        """The hash of the workers' watchdog counters (RECONCILER_EVENTS), which the API's /metrics shows."""
        return f"{self.prefix}:reconciler"

    def checkpoint_key(self, unit: str) -> str:
        """The Redis key of the latest checkpoint of what one task trains (a job's id, or a sweep group's name)."""
        return f"{self.prefix}:checkpoint:{unit}"

    def checkpoint_history_key(self, unit: str) -> str:
        """The Redis key of that checkpoint's history, in pieces (worker/attempt/checkpoints.py)."""
        return f"{self.prefix}:checkpoint:{unit}:history"

    def create(
        self,
        params: dict[str, Any],
        steps: int,
        owner: str | None = None,
        quota: int = 0,
        transaction: Pipeline | None = None,
        **fields: Any,
    ) -> Job:
        """Record a new queued job of owner (a client id); QuotaExceeded when owner has quota jobs queued or running.

        A sweep's trials (fields holding sweep) do not count towards their owner's quota. With a
        transaction (a MULTI pipeline), the record is written when it executes: no quota then.
        """
        if transaction is not None and quota:
            raise ValueError("a quota cannot be checked inside a transaction")
        job = Job(
            id=str(uuid.uuid4()),
            status="queued",
            params=params,
            created_at=now(),
            owner=owner,
            progress=JobProgress(epochs=params["num_epochs"], steps=steps),
            **fields,
        )
        encoded = json.dumps(encode(job.model_dump()))
        active = "0" if job.sweep else "1"
        created = self._create(
            keys=[self.key(job.id)], args=[encoded, self.prefix, job.id, owner or "", quota, active], client=transaction
        )
        if transaction is None and not created:
            raise QuotaExceeded(f"{quota} jobs queued or running")
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None when there is no such job."""
        raw = self.redis.hgetall(self.key(job_id))
        if not raw:
            return None
        return Job.model_validate({text(k): json.loads(v) for k, v in raw.items()})

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        """Several jobs in one round trip, in order (None for one that is gone)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.key(job_id))
        return [
            Job.model_validate({text(k): json.loads(v) for k, v in raw.items()}) if raw else None
            for raw in pipe.execute()
        ]

    def owners(self, job_ids: list[str]) -> list[str | None]:
        """The owners of several jobs in one round trip, in order (None for none, or a job that is gone)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.key(job_id), "owner")
        return [json.loads(raw) if raw else None for raw in pipe.execute()]

    def ids(self, status: str) -> list[str]:
        """The ids of every job in status."""
        return [text(m) for m in self.redis.zrange(self.index_key(status), 0, -1)]

    def cancel_queued(self, job_ids: list[str], **fields: Any) -> list[bool]:
        """Move each of these jobs from queued to cancelled (setting fields), in one round trip; which ones moved."""
        args: list[str | int] = [
            json.dumps(encode({"status": "cancelled", **fields})),
            self.prefix,
            "",
            "cancelled",
            "1",
            self.retention_s,
            int(time.time()),
            "",
            0,
            "queued",
        ]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            self._move(keys=[self.key(job_id), ""], args=[*args[:2], job_id, *args[3:]], client=pipe)
        return [bool(result) and result[0] == 1 for result in pipe.execute()]

    def request_cancel_many(self, job_ids: list[str]) -> list[bool]:
        """request_cancel for several jobs in one round trip; which ones were flagged."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            self._set_if(
                keys=[self.key(job_id)],
                args=[json.dumps(encode({"cancel_requested": True})), "phase", json.dumps("saving"), "running"],
                client=pipe,
            )
        return [result == 1 for result in pipe.execute()]

    def index_key(self, status: str | None = None, owner: str | None = None) -> str:
        """The sorted set (by sequence number) of every job, or those in status, or owner's (in status)."""
        mine = f"{self.prefix}:owner:{owner}" if owner is not None else None
        if status is None:
            return mine or f"{self.prefix}:jobs"
        return f"{mine}:status:{status}" if mine else f"{self.prefix}:status:{status}"

    def list(
        self, status: str | None, limit: int, cursor: int | None, owner: str | None = None
    ) -> tuple[list[Job], int | None]:
        """Newest first (owner's jobs only, when given); the cursor is the sequence number of the last job of the previous page.

        Each index holds exactly the jobs listed, so a page reads about limit records whatever the history.
        """
        if owner is not None and status is not None and not self._owner_index_built:
            with suppress(ResponseError):  # Redis refuses writes (at its maxmemory): list from the index as it is
                self.build_owner_index()
        index = self.index_key(status, owner)
        top = f"({cursor}" if cursor is not None else "+inf"
        found: list[tuple[Job, int]] = []
        while len(found) <= limit:  # one more than asked: is there a next page?
            batch = scored(
                self.redis.zrevrangebyscore(index, top, "-inf", start=0, num=limit + 1 - len(found), withscores=True)
            )
            if not batch:
                break
            top = f"({int(batch[-1][1])}"
            for (_, score), job in zip(batch, self.get_many([text(m) for m, _ in batch])):
                # A record gone (its retention) or moved since the index was read is left out.
                if job is not None and (status is None or job.status == status):
                    found.append((job, int(score)))
        page = found[:limit]
        return [job for job, _ in page], (page[-1][1] if len(found) > limit else None)

    def build_owner_index(self, batch: int = 1000) -> int:
        """Index the jobs written before the per-owner status index existed, once per key prefix; how many were.

        Idempotent and safe beside live moves (each batch is one atomic step, and moves keep the index
        from then on); the API runs it at start, list() before its first use of the index, and a marker
        key says it was done.
        """
        marker = f"{self.prefix}:index:owner-status"
        if self.redis.exists(marker):
            self._owner_index_built = True
            return 0
        indexed, start = 0, 0
        while ids := self.redis.zrange(self.index_key(), start, start + batch - 1):
            indexed += int(self._owner_index(args=[self.prefix, *ids]))
            start += batch
        self.redis.set(marker, "1")
        self._owner_index_built = True
        return indexed

    def count_by_status(self) -> dict[str, int]:
        """How many jobs there are in each status (kept as jobs move: no scan)."""
        counts = {text(k): int(v) for k, v in self.redis.hgetall(f"{self.prefix}:counts").items()}
        return {s: max(0, counts.get(s, 0)) for s in STATUSES}

    def update(self, job_id: str, **fields: Any) -> None:
        """Overwrite some fields of a job other than its status."""
        assert "status" not in fields, "status changes go through move()"
        self.redis.hset(self.key(job_id), mapping=hash_fields(encode(fields)))

    def move(
        self,
        job_id: str,
        status: str,
        only_from: set[str] | None = None,
        lease: LeaseGrant | None = None,
        **fields: Any,
    ) -> str | None:
        """Move the job to status (setting fields too) if the state machine allows it from the status it has.

        only_from narrows the statuses it may leave. With a lease, the move also takes the job's
        lease and raises LeaseHeld when another owner holds it. Returns the status it left, or
        None when it stayed (no such job, or a move not allowed from where it is).
        """
        allowed = sources(status)
        if only_from is not None:
            assert only_from <= allowed, f"{only_from} → {status} is not in the state machine"
            allowed = frozenset(only_from)
        args = [
            json.dumps(encode({"status": status, **fields})),
            self.prefix,
            job_id,
            status,
            "1" if status in FINISHED else "0",
            self.retention_s,
            int(time.time()),
            lease.owner if lease else "",
            lease.ttl_ms if lease else 0,
            *allowed,
        ]
        result = self._move(keys=[self.key(job_id), self.lease_key(job_id) if lease else ""], args=args)
        if not result or result[0] == 0:
            return None
        if result[0] == 2:
            raise LeaseHeld(job_id)
        return json.loads(result[1])

    def set_if(self, job_id: str, statuses: set[str], unless: tuple[str, Any] | None = None, **fields: Any) -> bool:
        """Set fields if the job's status is one of statuses and (unless given) that field does not hold that value."""
        field, value = (unless[0], json.dumps(unless[1])) if unless else ("", "")
        return self._set_if(keys=[self.key(job_id)], args=[json.dumps(encode(fields)), field, value, *statuses]) == 1

    def request_cancel(self, job_id: str) -> bool:
        """Flag a running job for cooperative cancellation; False if it is not running or already saving its model."""
        return self.set_if(job_id, {"running"}, unless=("phase", "saving"), cancel_requested=True)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked this job to stop."""
        raw = self.redis.hget(self.key(job_id), "cancel_requested")
        return bool(raw and json.loads(raw))

    def prune(self, batch: int = 500) -> int:
        """Forget finished jobs past the retention: their records and index entries; returns how many."""
        cutoff = time.time() - self.retention_s
        ids = [text(m) for m in self.redis.zrangebyscore(f"{self.prefix}:finished", "-inf", cutoff, start=0, num=batch)]
        if not ids:
            return 0
        reading = self.redis.pipeline()
        for job_id in ids:
            reading.hmget(self.key(job_id), "status", "owner")
        found = dict(zip(ids, reading.execute()))
        pipe = self.redis.pipeline()
        for job_id, (raw, owner) in found.items():
            if owner and json.loads(owner):
                pipe.zrem(self.index_key(owner=json.loads(owner)), job_id)
                if raw is not None:
                    pipe.zrem(self.index_key(json.loads(raw), json.loads(owner)), job_id)
            pipe.delete(self.key(job_id), self.checkpoint_key(job_id), self.checkpoint_history_key(job_id))
            pipe.zrem(self.index_key(), job_id)
            pipe.zrem(f"{self.prefix}:finished", job_id)
            for status in FINISHED:
                pipe.zrem(self.index_key(status), job_id)
            if raw is not None:
                pipe.hincrby(f"{self.prefix}:counts", json.loads(raw), -1)
        pipe.execute()
        return len(ids)


def encode(fields: dict[str, Any]) -> dict[str, str]:
    """Fields as the record stores them: each value JSON-encoded (a pydantic model as its dump)."""
    return {k: json.dumps(v.model_dump() if isinstance(v, BaseModel) else v) for k, v in fields.items()}
