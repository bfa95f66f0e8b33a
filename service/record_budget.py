"""A budget of records per client: the jobs and sweep trials it may create in any hour.

Every record costs Redis memory for JOB_RETENTION_S whatever happens to it after, so the budget
counts records when they are made and never gives one back (a DELETE ends a job, it does not
unmake its record). Only a submission refused before anything was written (a quota, an outage)
gives back what it reserved. The count is a sliding window in Redis, shared by every API process:
this hour's count plus the last hour's, weighted by how much of it is still inside the last 60
minutes (the approximation Cloudflare and the `limits` library use), so a client cannot spend two
budgets across a window's edge. Reserving is one atomic step: concurrent submissions never pass it.
"""

import math
import time
from contextlib import suppress
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from service.problems import Problem

WINDOW_S = 3600
# KEYS: this window's count, the previous window's. ARGV: records asked for, budget, window (s), seconds into
# this window. Answers {1, count after} when reserved, {0, count} when the budget has no room for them.
_RESERVE = """
local asked, budget, window, into = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local used = current + previous * (window - into) / window
if used + asked > budget then return {0, tostring(used), tostring(current), tostring(previous)} end
redis.call('INCRBY', KEYS[1], asked)
redis.call('EXPIRE', KEYS[1], 2 * window)
return {1, tostring(used + asked), tostring(current + asked), tostring(previous)}
"""


@dataclass(frozen=True)
class Reservation:
    """Records counted against a client's budget, in the window they were counted in."""

    key: str
    records: int


class RecordBudget:
    """Per-client budgets of records in one Redis; budget 0: none."""

    def __init__(self, redis: Redis, prefix: str, budget: int, window_s: int = WINDOW_S):
        self.redis, self.prefix, self.budget, self.window_s = redis, prefix, budget, window_s
        self._reserve = redis.register_script(_RESERVE)

    def reserve(self, client: str, records: int) -> Reservation | None:
        """Count records against client's budget, or a 429 naming the budget when it has no room for them."""
        if not self.budget:
            return None
        now = time.time()
        window, into = divmod(now, self.window_s)
        key = f"{self.prefix}:records:{client}:{int(window)}"
        ok, used, current, previous = self._reserve(
            keys=[key, f"{self.prefix}:records:{client}:{int(window) - 1}"],
            args=[records, self.budget, self.window_s, into],
        )
        if not ok:
            wait = self._wait(records, float(current), float(previous), into)
            raise Problem(
                429,
                "Too Many Requests",
                f"this client has made about {float(used):,.0f} of its {self.budget:,} records (jobs and sweep "
                f"trials) in the last hour (MAX_RECORDS_PER_HOUR) and this submission makes {records:,}; "
                "a cancelled or deleted job still counts; retry after the seconds in Retry-After",
                headers={"Retry-After": str(wait)},
            )
        return Reservation(key, records)

    def give_back(self, reservation: Reservation | None) -> None:
        """Uncount records that were never written (the submission was refused after its reservation)."""
        if reservation is not None:
            self.redis.decrby(reservation.key, reservation.records)

    def _wait(self, asked: int, current: float, previous: float, into: float) -> int:
        """Seconds until the window has room for asked records, if the client makes no other meanwhile."""
        room = self.budget - asked
        if current <= room:  # this window: the previous one's weight has to fade enough
            seconds = (self.window_s - into) - (room - current) * self.window_s / previous if previous > 0 else 1
        else:  # the next window, where this one's count weighs as the previous one's
            seconds = (self.window_s - into) + self.window_s * (1 - room / current)
        return max(1, math.ceil(seconds))


def give_back_quietly(budget: RecordBudget, reservation: Reservation | None) -> None:
    """Give back what a refused submission reserved; should Redis not answer, it stays counted."""
    with suppress(RedisError):
        budget.give_back(reservation)
