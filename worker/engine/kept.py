"""What a worker process keeps between jobs: compiled trainers, traced modules, laid-out figures."""

from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def kept(cache: dict[K, V], key: K, make: Callable[[], V], most: int) -> V:
    """cache[key], made when missing; the cache holds the most recently used `most` values."""
    value = cache.pop(key, None)
    if value is None:
        value = make()
    cache[key] = value  # the most recently used last
    while len(cache) > most:
        cache.pop(next(iter(cache)))
    return value
