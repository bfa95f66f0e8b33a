"""A worker's part in the fair share: once an attempt ends, its unit's place is free and the broker is topped up
from the pending queues (contract/dispatch.py), so the next unit starts as soon as a process is free."""

import logging
from collections.abc import Callable

from contract import tasks
from contract.dispatch import Dispatch
from contract.job_store import JobStore

log = logging.getLogger(__name__)
# Outcomes after which every job of the unit has ended; after the others (duplicate, fenced, abandoned)
# another attempt carries the unit on, and it stays in flight.
ENDED = frozenset({"succeeded", "cancelled", "failed", "finished", "skipped"})


def after_attempt(store: JobStore, send: Callable[[tasks.Message], None], unit: str, outcome: str) -> str:
    """Free the unit's place if it ended, send what goes next; returns the outcome. Never raises: a
    watchdog round tops the broker up within its interval."""
    dispatch = Dispatch(store.redis, store.prefix)
    try:
        if outcome in ENDED:
            dispatch.finished(unit)
        dispatch.top_up(send)
    except Exception:
        log.warning("could not send the units that go next; a watchdog round will", exc_info=True)
    return outcome


def top_up(store: JobStore, send: Callable[[tasks.Message], None], outcome: str) -> str:
    """Send what goes next (a tpe search's batch the task queued); returns the outcome. Never raises."""
    try:
        Dispatch(store.redis, store.prefix).top_up(send)
    except Exception:
        log.warning("could not send the units that go next; a watchdog round will", exc_info=True)
    return outcome
