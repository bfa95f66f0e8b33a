"""An attempt's leases in Redis: one token for every job it claimed, renewed together from a thread.

The holder renews them every third of their TTL, and counts from the moment it sent a renewal,
not when Redis answered. A holder that has not renewed for most of a TTL (Redis away or slow, the
process paused) or finds a lease taken by another attempt counts them as lost and stops, before
anyone else may take the jobs over; a write it still makes is refused by its fence.
"""

import json
import logging
import os
import socket
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

from contract.fence import Fence, LeaseLost
from worker.settings import LOST_AFTER

log = logging.getLogger(__name__)
# Renew only while every lease is still ours: 1, or 0 when one is not (nothing renewed then).
_RENEW = """
for i = 1, #KEYS do if redis.call('GET', KEYS[i]) ~= ARGV[1] then return 0 end end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return 1
"""
_RELEASE = (
    "for i = 1, #KEYS do if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end end return 1"
)


def token(attempt: int) -> str:
    """A new attempt's token: node, pid, attempt number and a nonce (no two attempts share one)."""
    return json.dumps(
        {"node": socket.gethostname(), "pid": os.getpid(), "attempt": attempt, "nonce": os.urandom(6).hex()}
    )


def holder_is_dead(raw: bytes | None) -> bool:
    """Whether a lease's holder is a process of this host that no longer exists (its lease is stale)."""
    if raw is None:
        return False
    try:
        holder = json.loads(raw)
        if holder["node"] != socket.gethostname():
            return False
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, KeyError, TypeError, PermissionError):
        return False
    return False


class LeaseKeeper:
    """Renews the leases of one fence until stopped; lost once not renewed for LOST_AFTER of the TTL."""

    def __init__(self, redis: Redis, fence: Fence, ttl_s: float):
        self.redis, self.fence, self.ttl_s = redis, fence, ttl_s
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._renewed = time.monotonic()
        self._taken = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def start(self, taken_at: float | None = None) -> "LeaseKeeper":
        """Start renewing; taken_at: when the claim that took the leases was sent (monotonic)."""
        self._renewed = taken_at if taken_at is not None else time.monotonic()
        self._thread.start()
        return self

    @property
    def lost(self) -> bool:
        """Whether this attempt must stop: a lease taken by another, or not proven for too long."""
        return self._taken or time.monotonic() - self._renewed > LOST_AFTER * self.ttl_s

    def check(self) -> None:
        """Raise LeaseLost if the leases are lost."""
        if self._taken:
            raise LeaseLost("another attempt holds a lease of this one")
        if self.lost:
            raise LeaseLost(f"not renewed for {time.monotonic() - self._renewed:.1f} s (TTL {self.ttl_s:g} s)")

    def _run(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            sent = time.monotonic()
            try:
                if self._renew(keys=list(self.fence.leases), args=[self.fence.token, int(self.ttl_s * 1000)]):
                    self._renewed = max(self._renewed, sent)
                else:
                    self._taken = True
                    log.error(
                        "a lease of this attempt is held by another now (%s); stopping", ", ".join(self.fence.leases)
                    )
                    return
            except RedisError as exc:
                log.warning("could not renew the leases %s: %s", ", ".join(self.fence.leases), exc)

    def stop(self, release: bool) -> None:
        """Stop renewing; release the leases still ours (nothing ran) or let them lapse (another worker takes over)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if release:
            try:
                self._release(keys=list(self.fence.leases), args=[self.fence.token])
            except RedisError:
                log.warning("could not release the leases %s; they lapse by themselves", ", ".join(self.fence.leases))
