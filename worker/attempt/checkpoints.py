"""An attempt's checkpoints in Redis: the latest one of what its task trains, written through its fence.

Two keys: the head (weights, optimizer, position, random state: a size set by the models' shapes) and a
list of history pieces, of which each save appends only what is new since the previous one, at most
PIECE_BYTES a piece. A save is one fenced step (the last piece with the head), preceded by one step per
further piece when much is new: no write grows with the steps trained. Both keys carry the job record's
own TTL, set again at every save, and go with the attempt's end step.
"""

import logging

from contract.fence import Fence, Step
from contract.job_store import JobStore
from contract.redis_values import as_bytes
from worker.engine.checkpoint import GroupCheckpoint
from worker.engine.checkpoint_history import Written, from_parts, head_bytes, history_pieces, written

log = logging.getLogger(__name__)
# Of history values a write carries at most, beside the head: a piece with its index stays under
# 512 KiB, one of the allocator's size classes, so Redis keeps it with little waste.
PIECE_BYTES = 500 * 1024
READ_PAGE = 64  # pieces read per round trip on resume


class Checkpoints:
    """The checkpoint of one task (a job, or a sweep's group), under the job store's prefix."""

    def __init__(self, store: JobStore, unit: str):
        self.store, self.key = store, store.checkpoint_key(unit)
        self.history_key = store.checkpoint_history_key(unit)
        self.ttl_s = store.retention_s + 24 * 3600  # a finished job's record is kept as long
        self.written: list[Written] | None = None  # what Redis holds of this attempt's histories

    @property
    def keys(self) -> tuple[str, str]:
        """Every key of the checkpoint."""
        return self.key, self.history_key

    def save(self, fence: Fence, checkpoint: GroupCheckpoint) -> None:
        """Append what is new to the history and replace the head, if this attempt still holds its leases
        (LeaseLost otherwise). The first save of an attempt that did not resume starts both keys afresh."""
        fresh = self.written is None or len(self.written) != len(checkpoint.models)
        since = self.written if self.written is not None and not fresh else [Written()] * len(checkpoint.models)
        pieces = history_pieces(checkpoint, since, PIECE_BYTES)
        for i, piece in enumerate(pieces):
            step = Step(fence)
            if fresh and i == 0:
                step.delete(self.key).delete(self.history_key)
            step.append(self.history_key, piece, self.ttl_s)
            if i == len(pieces) - 1:
                step.set(self.key, head_bytes(checkpoint), self.ttl_s)
            self.store.fenced.run(step)
        self.written = written(checkpoint)

    def load(self) -> GroupCheckpoint | None:
        """The latest checkpoint, if any (None when its history is incomplete: training starts over)."""
        head = as_bytes(self.store.redis.get(self.key))
        if not head:
            return None
        pieces: list[bytes] = []
        while batch := self.store.redis.lrange(self.history_key, len(pieces), len(pieces) + READ_PAGE - 1):
            pieces.extend(piece for piece in map(as_bytes, batch) if piece is not None)
        checkpoint = from_parts(head, pieces)
        if checkpoint is None:
            log.warning("the checkpoint %s misses part of its history; training starts over", self.key)
            return None
        self.written = written(checkpoint)
        return checkpoint
