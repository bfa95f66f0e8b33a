"""Taking over jobs whose worker died: every worker watches, one at a time under a Redis lock.

A job whose lease lapsed (its node was lost whole: nothing is left to requeue its message) is
sent to the queue again, where any free worker resumes it from its last checkpoint; a sweep's trial
is sent again with its whole group. Each round also forgets finished jobs and sweeps past their retention.
"""

import logging
import socket
import threading
from collections.abc import Callable

from redis.exceptions import RedisError

from contract.job import Job
from contract.job_store import JobStore
from contract.sweep_store import SweepStore

log = logging.getLogger(__name__)
TAKEOVER_GUARD_S = 300  # a job sent again is not sent again before its new worker claims it, or this long


class Watchdog:
    """A periodic check in the worker's main process."""

    def __init__(self, store: JobStore, send: Callable[[Job], list[str]], interval_s: float):
        """send queues a job again (a trial: its group) and returns the ids of the jobs it covers."""
        self.store, self.send, self.interval_s = store, send, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> "Watchdog":
        """Run a round every interval, from a thread of its own."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the rounds."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.round()
            except RedisError as exc:  # Redis away: the next round tries again
                log.warning("watchdog round skipped: %s", exc)

    def round(self) -> list[str]:
        """Take over the running jobs whose lease lapsed and prune old jobs, if no other worker is doing it now."""
        redis = self.store.redis
        if not redis.set(f"{self.store.prefix}:watchdog", socket.gethostname(), nx=True, px=int(self.interval_s * 900)):
            return []
        taken = []
        for job_id in self.store.ids("running"):
            if redis.exists(self.store.lease_key(job_id)):
                continue
            if not redis.set(takeover_key(self.store, job_id), 1, nx=True, ex=TAKEOVER_GUARD_S):
                continue
            job = self.store.get(job_id)
            if job is None or job.status != "running":
                continue
            log.warning("job %s lost its worker (%s): sending it to the queue again", job_id,
                        job.worker.host if job.worker else "unknown")
            covered = self.send(job)
            for other in covered:  # a group's other trials are covered by this sending
                redis.set(takeover_key(self.store, other), 1, ex=TAKEOVER_GUARD_S)
            taken.append(job_id)
        pruned = self.store.prune() + SweepStore(self.store).prune()
        if pruned:
            log.info("forgot %d finished jobs past their retention", pruned)
        return taken


def takeover_key(store: JobStore, job_id: str) -> str:
    """The key that marks a job as sent again for takeover."""
    return f"{store.prefix}:takeover:{job_id}"
