"""Fair share of the workers: work waits in Redis, a queue per owner (token), and goes to the broker only as
worker processes come free, next from the owner served least lately among those with work waiting.

A unit is one task's work: a job, or a sweep's group. The API queues units (enqueue) and tops the broker up;
so does every worker when it ends an attempt and every node's watchdog each round. Topping up is one atomic
step in Redis (reserve), so any number of them may run at once: no new process and no single dispatcher.
The broker holds about as many units as worker processes are free (the nodes say how many processes they
have, each watchdog round), so another owner's unit waits at most for the units already running.
"""

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from redis import Redis
from redis.client import Pipeline

from contract import dispatch_scripts, tasks
from contract.job_store import DEFAULT_PREFIX
from contract.redis_values import as_bytes, scored, text

ANONYMOUS = "-"  # the owner of work submitted without tokens: one queue, first come first served
TOP_UP_MOST = 64  # units sent by one top-up at most


def pending_key(prefix: str) -> str:
    """The sorted set of every unit waiting under prefix (KEDA counts it)."""
    return f"{prefix}:dispatch:pending"


def unit_id(job_id: str, sweep_id: str | None = None, group: int | None = None) -> str:
    """The unit a job belongs to: its own (a plain job) or its sweep group's; the id of the unit's task."""
    if sweep_id is None:
        return job_id
    assert group is not None, "a sweep's trial belongs to a group"
    return tasks.group_name(sweep_id, group)


class Dispatch:
    """The pending queues and the units in flight under one key prefix."""

    def __init__(self, redis: Redis, prefix: str = DEFAULT_PREFIX):
        self.redis, self.prefix, self.keys = redis, prefix, f"{prefix}:dispatch"
        self._enqueue = redis.register_script(dispatch_scripts.ENQUEUE)
        self._reserve = redis.register_script(dispatch_scripts.RESERVE)
        self._unreserve = redis.register_script(dispatch_scripts.UNRESERVE)
        self._withdraw = redis.register_script(dispatch_scripts.WITHDRAW)
        self._sent = redis.register_script(dispatch_scripts.SENT)
        self._heartbeat = redis.register_script(dispatch_scripts.HEARTBEAT)

    @property
    def pending_key(self) -> str:
        """The sorted set of every unit waiting (KEDA counts it)."""
        return pending_key(self.prefix)

    def enqueue(
        self, owner: str | None, units: list[tuple[tasks.Message, list[str]]], transaction: Pipeline | None = None
    ) -> int:
        """Queue units (each a message and the jobs it trains) for owner, in order; returns how many were new.

        With a transaction (a MULTI pipeline) they are queued when it executes, with its other writes (0 returned).
        """
        args: list[Any] = [self.prefix, owner or ANONYMOUS]
        for message, jobs in units:
            args += [message.task_id, _entry(owner, message, jobs)]
        queued = self._enqueue(args=args, client=transaction)
        return 0 if transaction is not None else int(queued)

    def top_up(self, send: Callable[[tasks.Message], None], most: int = TOP_UP_MOST) -> int:
        """Send the units that go next through send (a message at a time); returns how many were sent.

        A unit send refuses goes back to the head of its queue, with those not yet sent, and the error is raised.
        """
        taken = [_message(raw) for raw in self._reserve(args=[self.prefix, most])]
        for i, message in enumerate(taken):
            try:
                send(message)
            except Exception:
                for left in reversed(taken[i:]):  # each goes back to its queue's head
                    self._unreserve(args=[self.prefix, left.task_id])
                raise
        return len(taken)

    def sent(self, owner: str | None, message: tasks.Message, jobs: list[str]) -> None:
        """Note a unit sent outside its turn (a takeover or a message sent again): in flight from now."""
        self._sent(args=[self.prefix, message.task_id, _entry(owner, message, jobs)])

    def finished(self, unit: str) -> None:
        """The unit's jobs have all ended: its place in flight is free."""
        pipe = self.redis.pipeline()
        pipe.zrem(f"{self.keys}:inflight", unit)
        pipe.hdel(f"{self.keys}:units", unit)
        pipe.execute()

    def withdraw(self, unit: str) -> bool:
        """Take a waiting unit out of its queue (its jobs were cancelled); False when it was not waiting."""
        return bool(self._withdraw(args=[self.prefix, unit]))

    def heartbeat(self, node: str, processes: int, ttl_s: float) -> None:
        """A worker node is alive with this many worker processes, for ttl_s more."""
        self._heartbeat(args=[self.prefix, node, processes, int(ttl_s * 1000)])

    def leave(self, node: str) -> None:
        """A worker node stops: its processes no longer count."""
        pipe = self.redis.pipeline()
        pipe.zrem(f"{self.keys}:nodes", node)
        pipe.hdel(f"{self.keys}:slots", node)
        pipe.execute()

    def state(self, unit: str) -> tuple[str | None, float | None]:
        """Whether the unit is 'pending' or 'inflight' (and since when, in s), or (None, None)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zscore(self.pending_key, unit)
        pipe.zscore(f"{self.keys}:inflight", unit)
        pending, inflight = pipe.execute()
        if pending is not None:
            return "pending", None
        return ("inflight", inflight / 1000) if inflight is not None else (None, None)

    def in_flight(self) -> dict[str, float]:
        """Every unit in flight and when it was last sent (s)."""
        members = scored(self.redis.zrange(f"{self.keys}:inflight", 0, -1, withscores=True))
        return {text(m): s / 1000 for m, s in members}

    def waiting(self) -> list[tasks.Message]:
        """Every unit waiting, in the order they arrived (whatever the order they will go in)."""
        ids = [text(m) for m in self.redis.zrange(self.pending_key, 0, -1)]
        raws = self.redis.hmget(f"{self.keys}:units", ids) if ids else []
        return [_message(data) for raw in raws if (data := as_bytes(raw))]


def _entry(owner: str | None, message: tasks.Message, jobs: list[str]) -> str:
    return json.dumps({"owner": owner or ANONYMOUS, "jobs": jobs, "message": asdict(message)})


def _message(raw: bytes) -> tasks.Message:
    return tasks.Message(**json.loads(raw)["message"])
