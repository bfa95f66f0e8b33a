"""Fenced writes: each write an attempt makes after its claim is one Redis step that succeeds only
while the attempt still holds every lease it took (its token in each lease key).

A worker that was paused, cut off or slowed past its lease's TTL finds its token gone (another
worker took the job over, or the lease lapsed) and its write refused: LeaseLost, and it stops.
"""

import json
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from contract import job_scripts


class LeaseLost(Exception):
    """This attempt no longer holds a lease it took: another worker may be running its jobs."""


@dataclass(frozen=True)
class Fence:
    """An attempt's token and the lease keys it holds with it."""

    token: str
    leases: tuple[str, ...]


class Step:
    """The operations of one fenced step, in order; keys and payloads are numbered as the script wants them."""

    def __init__(self, fence: Fence):
        self.fence = fence
        self.keys: list[str] = list(fence.leases)
        self.ops: list[list[Any]] = []
        self.payloads: list[bytes | str] = []

    def _key(self, key: str) -> int:
        if key not in self.keys:
            self.keys.append(key)
        return self.keys.index(key) + 1

    def hset(self, key: str, fields: dict[str, str]) -> "Step":
        """Set fields (JSON-encoded values) of a hash; a job's phase never leaves saving."""
        self.ops.append(["hset", self._key(key), fields])
        return self

    def hset_unless(self, key: str, fields: dict[str, str], field: str, value: Any) -> "Step":
        """Set fields unless field holds value; the step's result says whether they were set."""
        self.ops.append(["hset_unless", self._key(key), fields, field, json.dumps(value)])
        return self

    def set(self, key: str, value: bytes | str, ttl_s: float = 0) -> "Step":
        """Set a plain key (with a TTL when given)."""
        self.payloads.append(value)
        self.ops.append(["set", self._key(key), 8 + len(self.payloads) - 1, int(ttl_s * 1000)])
        return self

    def append(self, key: str, value: bytes | str, ttl_s: float = 0) -> "Step":
        """Append to a list (its TTL set again when given)."""
        self.payloads.append(value)
        self.ops.append(["rpush", self._key(key), 8 + len(self.payloads) - 1, int(ttl_s * 1000)])
        return self

    def delete(self, key: str) -> "Step":
        """Delete a key."""
        self.ops.append(["del", self._key(key)])
        return self

    def move(self, key: str, job_id: str, status: str, fields: dict[str, str]) -> "Step":
        """Move a running job of the attempt to a final status, keeping the indexes and counts."""
        self.ops.append(["move", self._key(key), job_id, status, fields])
        return self

    def group_done(self, sweep_key: str, done_key: str, group: int) -> "Step":
        """Count a sweep's group as finished, once; the result is 1 for the group that counts the last."""
        self.ops.append(["group_done", self._key(sweep_key), self._key(done_key), group])
        return self

    def sweep_end(self, key: str, sweep_id: str, fields: dict[str, str]) -> "Step":
        """End a sweep (status among fields) unless it has ended."""
        self.ops.append(["sweep_end", self._key(key), fields, sweep_id])
        return self


class FencedWriter:
    """Runs fenced steps against one Redis under one key prefix."""

    def __init__(self, redis: Redis, prefix: str, retention_s: int):
        self.redis, self.prefix, self.retention_s = redis, prefix, retention_s
        self._script = redis.register_script(job_scripts.FENCED)

    def run(self, step: Step, release: bool = False) -> list[int]:
        """Apply every operation of step, or raise LeaseLost; release drops the leases in the same step."""
        fence = step.fence
        args = [
            fence.token,
            len(fence.leases),
            "1" if release else "0",
            json.dumps(step.ops),
            self.prefix,
            self.retention_s,
            int(time.time()),
            *step.payloads,
        ]
        answer = self._script(keys=step.keys, args=args)
        if not answer or answer[0] != 1:
            lost = fence.leases[int(answer[1]) - 1] if answer else "?"
            raise LeaseLost(f"{lost} is no longer held by this attempt")
        return [int(r) for r in answer[1:]]
