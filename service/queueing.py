"""How the API queues work: into its owner's pending queue in Redis (contract/dispatch.py), then a top-up of
the broker, which sends the units that go next if worker processes are free."""

import logging
from typing import TYPE_CHECKING

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from contract import tasks

if TYPE_CHECKING:
    from service.app import Services

log = logging.getLogger(__name__)
QUEUE_DOWN = "the queue was unavailable"  # the error of a job or sweep whose queueing Redis refused


def queue(s: "Services", owner: str | None, units: list[tuple[tasks.Message, list[str]]]) -> None:
    """Queue units (a message and the jobs it trains) for owner; a RedisError when Redis did not take them."""
    s.dispatch.enqueue(owner, units)
    top_up(s)


def top_up(s: "Services") -> None:
    """Send what goes next; a broker that refuses keeps it waiting (a worker or a watchdog round sends it)."""
    try:
        s.dispatch.top_up(lambda message: tasks.send(s.celery, message))
    except (OperationalError, RedisError):
        log.warning("the broker did not take the units that go next; they wait in Redis", exc_info=True)


def withdraw(s: "Services", unit: str) -> None:
    """Take a cancelled unit out of its queue (a worker would otherwise find it finished and skip it)."""
    try:
        s.dispatch.withdraw(unit)
    except RedisError:
        log.warning("unit %s stays in its queue; its claim will skip it", unit)
