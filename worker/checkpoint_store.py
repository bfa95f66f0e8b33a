"""Checkpoints of running jobs in Redis, so another worker can resume a job whose worker was lost."""

from redis import Redis

from worker.engine.checkpoint import Checkpoint

TTL_S = 7 * 24 * 3600


class CheckpointStore:
    """One checkpoint per job, the latest, under the job key prefix."""

    def __init__(self, redis: Redis, prefix: str, kind: type = Checkpoint):
        """kind: the checkpoint class (a job's Checkpoint, or a sweep group's), with to_bytes and from_bytes."""
        self.redis, self.prefix, self.kind = redis, prefix, kind

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:checkpoint:{job_id}"

    def save(self, job_id: str, checkpoint) -> None:
        """Replace the job's checkpoint."""
        self.redis.set(self._key(job_id), checkpoint.to_bytes(), ex=TTL_S)

    def load(self, job_id: str):
        """The job's latest checkpoint, if any."""
        data = self.redis.get(self._key(job_id))
        return self.kind.from_bytes(data) if data else None

    def delete(self, job_id: str) -> None:
        """Forget the job's checkpoint (it has ended)."""
        self.redis.delete(self._key(job_id))
