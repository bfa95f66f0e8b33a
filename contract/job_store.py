"""Job records in Redis: one hash per job (a JSON value per field) and a newest-first index.

Every status change goes through move(), which the state machine in contract.job allows or refuses.
"""

import json
import uuid
from typing import Any

from pydantic import BaseModel
from redis import Redis

from contract.clock import now
from contract.job import Job, JobProgress, sources

# Compare-and-set on the status, so a cancel and a start can never both win: sets the fields
# when the status is one of ARGV[2:], and answers the status it found (nil: no such job).
_SET_IF_STATUS = """
local raw = redis.call('HGET', KEYS[1], 'status')
if not raw then return nil end
local status = cjson.decode(raw)
for i = 2, #ARGV do if ARGV[i] == status then
  local fields = cjson.decode(ARGV[1])
  for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
  return {1, raw}
end end
return {0, raw}
"""


class JobStore:
    """The job records under one key prefix."""

    def __init__(self, redis: Redis, prefix: str = "echo-rnn"):
        self.redis = redis
        self.prefix = prefix
        self._set_if_status = redis.register_script(_SET_IF_STATUS)

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:jobs"

    def create(self, params: dict[str, Any], steps: int) -> Job:
        """Record a new queued job."""
        job = Job(
            id=str(uuid.uuid4()),
            status="queued",
            params=params,
            created_at=now(),
            progress=JobProgress(epochs=params["num_epochs"], steps=steps),
        )
        seq = self.redis.incr(f"{self.prefix}:seq")
        pipe = self.redis.pipeline()
        pipe.hset(self._key(job.id), mapping=_encode(job.model_dump()))
        pipe.zadd(self._index, {job.id: seq})
        pipe.execute()
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None when there is no such job."""
        raw = self.redis.hgetall(self._key(job_id))
        if not raw:
            return None
        return Job.model_validate({k.decode(): json.loads(v) for k, v in raw.items()})

    def list(self, status: str | None, limit: int, cursor: int | None) -> tuple[list[Job], int | None]:
        """Newest first; the cursor is the sequence number of the last job of the previous page."""
        top = f"({cursor}" if cursor is not None else "+inf"
        found: list[tuple[Job, int]] = []
        while len(found) <= limit:  # one more than asked: is there a next page?
            batch = self.redis.zrevrangebyscore(self._index, top, "-inf", start=0, num=limit + 1, withscores=True)
            if not batch:
                break
            for member, score in batch:
                top = f"({int(score)}"
                job = self.get(member.decode())
                if job is not None and (status is None or job.status == status):
                    found.append((job, int(score)))
        page = found[:limit]
        more = len(found) > limit
        return [job for job, _ in page], (page[-1][1] if more else None)

    def count_by_status(self) -> dict[str, int]:
        """How many jobs there are in each status."""
        ids = [m.decode() for m in self.redis.zrange(self._index, 0, -1)]
        pipe = self.redis.pipeline()
        for job_id in ids:
            pipe.hget(self._key(job_id), "status")
        counts: dict[str, int] = {}
        for raw in pipe.execute():
            if raw:
                status = json.loads(raw)
                counts[status] = counts.get(status, 0) + 1
        return counts

    def update(self, job_id: str, **fields: Any) -> None:
        """Overwrite some fields of a job other than its status."""
        assert "status" not in fields, "status changes go through move()"
        self.redis.hset(self._key(job_id), mapping=_encode(fields))

    def move(self, job_id: str, status: str, only_from: set[str] | None = None, **fields: Any) -> str | None:
        """Move the job to status (setting fields too) if the state machine allows it from the status it has.

        only_from narrows the statuses it may leave. Returns the status it left, or None when it
        stayed (no such job, or a move not allowed from where it is).
        """
        allowed = sources(status)
        if only_from is not None:
            assert only_from <= allowed, f"{only_from} → {status} is not in the state machine"
            allowed = frozenset(only_from)
        return self._set_where(job_id, allowed, status=status, **fields)

    def _set_where(self, job_id: str, statuses: frozenset[str], **fields: Any) -> str | None:
        result = self._set_if_status(keys=[self._key(job_id)], args=[json.dumps(_encode(fields)), *statuses])
        if not result or result[0] != 1:
            return None
        return json.loads(result[1])

    def add_attempt(self, job_id: str) -> int:
        """Count one more start of the job; returns the count."""
        return self.redis.hincrby(self._key(job_id), "attempts", 1)

    def add_resume(self, job_id: str, step: int) -> None:
        """Record that the job resumed from a checkpoint at this step."""
        job = self.get(job_id)
        resumed = [r.model_dump() for r in job.resumed] if job else []
        self.update(job_id, resumed=[*resumed, {"at": now(), "step": step}])

    def request_cancel(self, job_id: str) -> bool:
        """Flag a running job for cooperative cancellation; False if it is not running."""
        return self._set_where(job_id, frozenset({"running"}), cancel_requested=True) is not None

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked this job to stop."""
        raw = self.redis.hget(self._key(job_id), "cancel_requested")
        return bool(raw and json.loads(raw))


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v.model_dump() if isinstance(v, BaseModel) else v) for k, v in fields.items()}
