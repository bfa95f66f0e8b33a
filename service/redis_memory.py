"""How full Redis is: its used memory against its maxmemory, for /readyz and /metrics.

Redis runs with a maxmemory and no eviction (compose, make run, Kubernetes): past the bound it
refuses writes, so the API answers submissions with 503. Readiness says so before that happens.
"""

from dataclasses import dataclass

from redis import Redis
from redis.exceptions import OutOfMemoryError


@dataclass(frozen=True)
class RedisMemory:
    """Bytes Redis uses, and its maxmemory (0: none)."""

    used: int
    max: int

    @property
    def fraction(self) -> float | None:
        """Used over maxmemory, or None when Redis has no bound."""
        return self.used / self.max if self.max else None


def read(redis: Redis) -> RedisMemory:
    """Redis's memory as INFO memory reports it (RedisError when it does not answer)."""
    info = redis.info("memory")
    return RedisMemory(int(info["used_memory"]), int(info.get("maxmemory", 0)))


def takes_writes(redis: Redis, prefix: str) -> bool:
    """Whether Redis takes a write now: one tiny key, False when it answers out of memory.

    Asked rather than computed: Redis decides from what it counts at that moment (buffers included).
    """
    try:
        redis.set(f"{prefix}:readyz", "1", ex=60)
    except OutOfMemoryError:
        return False
    return True
