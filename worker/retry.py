"""Calls to a server that may be down for a while: retried with exponential backoff until the
server has been unreachable for longer than a limit (no TensorFlow, no Celery)."""

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Unreachable(RuntimeError):
    """The server stayed unreachable past the limit."""


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
    ):
        self.name, self.limit_s, self.transient, self.error = name, limit_s, transient, error
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self._down_since: float | None = None
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
            try:
                result = fn()
            except Exception as exc:
                if not self.transient(exc):
                    raise
                with self._lock:
                    if self._down_since is None:
                        self._down_since = time.monotonic()
                    down = time.monotonic() - self._down_since
                left = self.limit_s - down
                if left <= 0:
                    raise self.error(
                        f"{self.name} unreachable for {down:.0f} s (limit {self.limit_s:g} s) while {what}: {_short(exc)}"
                    ) from exc
                log.warning("%s unreachable for %.0f s while %s; retrying in %.1f s: %s", self.name, down, what,
                            min(delay, left), _short(exc))
                time.sleep(min(delay, left))
                delay = min(delay * 2, self.max_delay_s)
            else:
                with self._lock:
                    if self._down_since is not None:
                        log.info("%s answers again after %.0f s", self.name, time.monotonic() - self._down_since)
                    self._down_since = None
                return result


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
