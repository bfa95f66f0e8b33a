"""Job records in Redis, shared by the API and the workers (no TensorFlow, no Celery)."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis import Redis

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
TASK_NAME = "echo_rnn.train"

# Compare-and-set on the status, so a cancel and a start can never both win.
_TRANSITION = """
local raw = redis.call('HGET', KEYS[1], 'status')
if not raw then return -1 end
local status = cjson.decode(raw)
for i = 2, #ARGV do if ARGV[i] == status then
  local fields = cjson.decode(ARGV[1])
  for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
  return 1
end end
return 0
"""


def now() -> str:
    """The current time, ISO 8601 UTC."""
    return iso(None)


def iso(millis: int | None) -> str:
    """A time in milliseconds since the epoch (now when None) as ISO 8601 UTC."""
    moment = datetime.now(UTC) if millis is None else datetime.fromtimestamp(millis / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Progress(BaseModel):
    epoch: int = 0
    epochs: int
    step: int = 0
    steps: int
    fraction: float = 0.0


class Metrics(BaseModel):
    loss: float | None = None
    epoch_loss: float | None = None
    echo_accuracy: float | None = None


class MlflowLink(BaseModel):
    experiment_id: str
    run_id: str
    url: str


class ModelRef(BaseModel):
    uri: str
    name: str
    version: str


class WorkerInfo(BaseModel):
    host: str
    pid: int


class Resume(BaseModel):
    at: str
    step: int = Field(description="The training step it resumed from.")


class Job(BaseModel):
    """A training job as the API shows it."""

    id: str
    status: Status
    params: dict[str, Any]
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    progress: Progress
    metrics: Metrics = Field(default_factory=Metrics)
    error: str | None = None
    device: str | None = None
    mlflow: MlflowLink | None = None
    model: ModelRef | None = None
    cancel_requested: bool = False
    attempts: int = Field(0, description="How many times a worker started this job.")
    worker: WorkerInfo | None = Field(None, description="The process running (or that last ran) the job.")
    resumed: list[Resume] = Field(default_factory=list, description="Each time the job resumed from a checkpoint after losing its worker.")


class JobStore:
    """Job records as Redis hashes (one JSON value per field) plus a newest-first index."""

    def __init__(self, redis: Redis, prefix: str = "echo-rnn"):
        self.redis = redis
        self.prefix = prefix
        self._transition = redis.register_script(_TRANSITION)

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
            progress=Progress(epochs=params["num_epochs"], steps=steps),
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
        """Overwrite some fields of a job."""
        self.redis.hset(self._key(job_id), mapping=_encode(fields))

    def transition(self, job_id: str, allowed: set[str] | frozenset[str], **fields: Any) -> bool:
        """Set fields (usually a new status) only if the job's status is one of allowed."""
        result = self._transition(keys=[self._key(job_id)], args=[json.dumps(_encode(fields)), *allowed])
        return result == 1

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
        return self.transition(job_id, {"running"}, cancel_requested=True)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked this job to stop."""
        raw = self.redis.hget(self._key(job_id), "cancel_requested")
        return bool(raw and json.loads(raw))


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v.model_dump() if isinstance(v, BaseModel) else v) for k, v in fields.items()}
