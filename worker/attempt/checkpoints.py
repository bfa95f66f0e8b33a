"""An attempt's checkpoints in Redis: the latest one of what its task trains, written through its fence."""

from contract.fence import Fence, Step
from contract.job_store import JobStore
from contract.redis_values import as_bytes
from worker.engine.checkpoint import GroupCheckpoint

TTL_S = 7 * 24 * 3600  # an abandoned task's checkpoint is forgotten after this


class Checkpoints:
    """The checkpoint of one task (a job, or a sweep's group), under the job store's prefix."""

    def __init__(self, store: JobStore, unit: str):
        self.store, self.key = store, store.checkpoint_key(unit)

    def save(self, fence: Fence, checkpoint: GroupCheckpoint) -> None:
        """Replace the checkpoint, if this attempt still holds its leases (LeaseLost otherwise)."""
        self.store.fenced.run(Step(fence).set(self.key, checkpoint.to_bytes(), TTL_S))

    def load(self) -> GroupCheckpoint | None:
        """The latest checkpoint, if any."""
        data = as_bytes(self.store.redis.get(self.key))
        return GroupCheckpoint.from_bytes(data) if data else None
