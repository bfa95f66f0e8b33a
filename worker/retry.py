"""Calls to a server that may be down for a while: retried with exponential backoff until the
server has been unreachable for longer than a limit (no TensorFlow, no Celery)."""

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Unreachable(RuntimeError):
    """The server stayed unreachable past the limit."""


class RedisUnavailable(Unreachable):
    """Redis stayed unreachable past the limit."""


class Outage:
    """Retries the calls to one server and gives up once it has been unreachable for limit_s.

    The outage is counted across calls and threads, from the first failure that no success
    followed: once a server has been down past the limit, every later call gets one try, not a
    fresh limit of its own. Errors that transient() does not accept are raised at once.
    """

    def __init__(
        self,
        name: str,
        limit_s: float,
        transient: Callable[[BaseException], bool],
        error: type[Exception] = Unreachable,
        first_delay_s: float = 0.5,
        max_delay_s: float = 10.0,
        gate: threading.Semaphore | None = None,
        guard: Callable[[], None] | None = None,
    ):
        """gate, shared by several Outages, bounds how many of their calls run at once; guard runs before
        every try and raises to stop it (an attempt that lost its lease writes nothing more)."""
        self.name, self.limit_s, self.transient, self.error = name, limit_s, transient, error
        self.gate, self.guard = gate, guard
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self._down_since: float | None = None
        self.given_up = False  # a call gave up and no call succeeded since
        self._lock = threading.Lock()

    @property
    def down_s(self) -> float:
        """How long the server has been unreachable (0 when the last call succeeded)."""
        with self._lock:
            return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    def call(self, fn: Callable[[], T], what: str) -> T:
        """fn(), retried while its errors are transient and the outage is within the limit."""
        delay = self.first_delay_s
        while True:
            started = time.monotonic()
            if self.guard is not None:
                self.guard()
            try:
                if self.gate is None:
                    result = fn()
                else:
                    with self.gate:
                        result = fn()
            except Exception as exc:
                if not self.transient(exc):
                    raise
                with self._lock:
                    if self._down_since is None:  # the outage began when the first failed call did
                        self._down_since = started
                    down = time.monotonic() - self._down_since
                left = self.limit_s - down
                if left <= 0:
                    self.given_up = True
                    raise self.error(
                        f"{self.name} unreachable for {down:.0f} s (limit {self.limit_s:g} s) while {what}: {_short(exc)}"
                    ) from exc
                log.warning(
                    "%s unreachable for %.0f s while %s; retrying in %.1f s: %s",
                    self.name,
                    down,
                    what,
                    min(delay, left),
                    _short(exc),
                )
                time.sleep(min(delay, left))
                delay = min(delay * 2, self.max_delay_s)
            else:
                with self._lock:
                    if self._down_since is not None:
                        log.info("%s answers again after %.0f s", self.name, time.monotonic() - self._down_since)
                    self._down_since = None
                    self.given_up = False
                return result


class BestEffort:
    """Calls that may be skipped while their server is down (progress, cancel checks, checkpoints).

    A call that fails transiently returns default, and calls in the next pause_s return default
    at once, so the caller (the training loop) never waits long on a server that is away.
    """

    def __init__(self, name: str, transient: Callable[[BaseException], bool], pause_s: float = 5.0):
        self.name, self.transient, self.pause_s = name, transient, pause_s
        self._skip_until = 0.0
        self._down = False

    def call(self, fn: Callable[[], T], what: str, default: T | None = None) -> T | None:
        """fn(), or default when the server is down or was a moment ago."""
        if time.monotonic() < self._skip_until:
            return default
        try:
            result = fn()
        except Exception as exc:
            if not self.transient(exc):
                raise
            if not self._down:
                log.warning(
                    "%s unreachable: skipping %s (and such calls for a while): %s", self.name, what, _short(exc)
                )
            self._down = True
            self._skip_until = time.monotonic() + self.pause_s
            return default
        if self._down:
            log.info("%s answers again", self.name)
        self._down = False
        return result


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def redis_transient(exc: BaseException) -> bool:
    """Whether a Redis call failed because the server is down, restarting or loading its data."""
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError))  # BusyLoadingError is a ConnectionError


def redis_outage(url: str, limit_s: float) -> Outage:
    """Retrying calls to the Redis at url (named without its password) for at most limit_s of unavailability."""
    parts = urlparse(url)
    return Outage(f"Redis at {parts.hostname}:{parts.port or 6379}", limit_s, redis_transient, RedisUnavailable)
