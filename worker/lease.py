"""A running job's lease in Redis: held by the process training it, renewed from a thread of its own.

The holder renews it every third of its TTL. A holder that cannot renew for most of a TTL (Redis
away, or the lease taken by another worker) counts it as lost and stops, before anyone else may
take the job over: never two trainers on one job.
"""

import json
import logging
import os
import socket
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

from contract.job_store import Lease

log = logging.getLogger(__name__)
# Compare-and-set on the owner: renew or release only a lease we still hold.
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class LeaseLost(Exception):
    """This process no longer holds the job's lease: another worker may be running it."""


def owner(attempt: int) -> str:
    """This process's owner string for a lease: node, pid and attempt."""
    return json.dumps({"node": socket.gethostname(), "pid": os.getpid(), "attempt": attempt, "nonce": os.urandom(4).hex()})


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
    """Renews one lease until stopped; lost once it has not been renewed for 0.8 of its TTL."""

    def __init__(self, redis: Redis, key: str, lease: Lease):
        self.redis, self.key, self.lease = redis, key, lease
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._renewed = time.monotonic()
        self._taken = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def start(self) -> "LeaseKeeper":
        """Start renewing (the lease was just taken)."""
        self._renewed = time.monotonic()
        self._thread.start()
        return self

    @property
    def lost(self) -> bool:
        """Whether this process must stop working on the job."""
        return self._taken or time.monotonic() - self._renewed > 0.8 * self.lease.ttl_ms / 1000

    def check(self) -> None:
        """Raise LeaseLost if the lease is lost."""
        if self.lost:
            raise LeaseLost(f"the job's lease ({self.key}) was lost: another worker may take the job over")

    def _run(self) -> None:
        while not self._stop.wait(self.lease.ttl_ms / 3000):
            try:
                if self._renew(keys=[self.key], args=[self.lease.owner, self.lease.ttl_ms]):
                    self._renewed = time.monotonic()
                else:
                    self._taken = True
                    log.error("lease %s is held by another owner now; stopping", self.key)
                    return
            except RedisError as exc:
                log.warning("could not renew lease %s: %s", self.key, exc)

    def stop(self, release: bool) -> None:
        """Stop renewing; release the lease (the job has ended here) or let it lapse (another worker takes over)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if release:
            try:
                self._release(keys=[self.key], args=[self.lease.owner])
            except RedisError:
                log.warning("could not release lease %s; it lapses by itself", self.key)
