"""The watchdog and reconciler: every worker node runs one, one round at a time across nodes under a Redis lock.

Each round brings every record to an end someone is working towards:
- a running job whose lease lapsed (its node was lost or paused) is sent to the queue again, where
  any free worker resumes it from its checkpoint (a sweep's trial: with its whole group);
- a queued job or group sent to the broker longer than reconcile_after_s ago that no live lease holds
  (its message was lost with the broker's queue) is sent again; one older than that which neither waits
  in its owner's queue nor was sent (the API died in between) is queued; a duplicate delivery is dropped
  by the claim, so sending again is safe;
- a sweep whose trials have all ended but which has not (its finisher failed or died) is finished
  by a task of its own;
- finished jobs and sweeps past their retention are forgotten;
- and on every node, lock or not: the node says how many worker processes it has, and tops the broker
  up from the pending queues (contract/dispatch.py), so work goes on even when no attempt ends.
A round is bounded in time and work, and no error ends the watchdog: it is logged and counted in
the Redis hash <prefix>:reconciler (errors, taken_over, resent, sweeps_finished), which the API's
/metrics shows.
"""

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from contract import clock, tasks
from contract.dispatch import Dispatch, unit_id
from contract.job import FINISHED, Job
from contract.job_store import JobStore
from contract.redis_values import scored, text
from contract.sweep_store import SweepStore

log = logging.getLogger(__name__)
TAKEOVER_GUARD_S = 300  # a job sent again is not sent again before its new worker claims it, or this long
BATCH = 200  # jobs or sweeps looked at per round and kind


@dataclass
class Round:
    """What one round did."""

    taken_over: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    sweeps_finished: list[str] = field(default_factory=list)


class Watchdog:
    """A periodic check in the worker's main process (which never imports TensorFlow)."""

    def __init__(
        self,
        store: JobStore,
        send: Callable[[tasks.Message], None],
        interval_s: float,
        reconcile_after_s: float = 300.0,
        processes: int = 0,
    ):
        """send enqueues a message (the celery app's send_task); processes: the node's worker processes (0: none)."""
        self.store, self.sweeps, self.send = store, SweepStore(store), send
        self.dispatch = Dispatch(store.redis, store.prefix)
        self.interval_s, self.reconcile_after_s, self.processes = interval_s, reconcile_after_s, processes
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self.counters = store.reconciler_key()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> "Watchdog":
        """Run a round every interval, from a thread of its own (the node's word and a top-up at once)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the rounds; the node's processes no longer count."""
        self._stop.set()
        if self.processes:
            try:
                self.dispatch.leave(self.node)
            except Exception:  # noqa: BLE001 (its word lapses by itself)
                log.warning("could not withdraw this node's worker processes from the dispatch")

    @property
    def alive(self) -> bool:
        """Whether the rounds go on."""
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.announce()
            self.dispatch.top_up(self.send)
        except Exception:
            log.exception("could not announce this node or top the broker up; the next round tries again")
        while not self._stop.wait(self.interval_s):
            try:
                self.round()
            except Exception:  # Redis or the broker away, a bad record: the next round tries again
                log.exception("watchdog round failed; the next one tries again")
                self._count("errors")

    def announce(self) -> None:
        """Say that this node is alive with its worker processes, for three rounds."""
        if self.processes:
            self.dispatch.heartbeat(self.node, self.processes, 3 * self.interval_s)

    def _count(self, event: str, n: int = 1) -> None:
        if n:
            try:
                self.store.redis.hincrby(self.counters, event, n)
            except Exception:  # noqa: BLE001 (counting must never stop the watchdog)
                log.warning("could not count the watchdog's %s", event)

    def round(self) -> Round:
        """One round (its records part only if no other worker is running one now), then a top-up."""
        self.announce()
        done = Round()
        if self.store.redis.set(
            f"{self.store.prefix}:watchdog", socket.gethostname(), nx=True, px=int(self.interval_s * 900)
        ):
            self._reconcile(done)
        self.dispatch.top_up(self.send)
        return done

    def _reconcile(self, done: Round) -> None:
        deadline = time.monotonic() + max(1.0, 0.8 * self.interval_s)
        try:
            self._take_over(done, deadline)
            self._resend_in_flight(done, deadline)
            self._resend_queued(done, deadline)
            self._finish_sweeps(done, deadline)
        finally:
            self._count("taken_over", len(done.taken_over))
            self._count("resent", len(done.resent))
            self._count("sweeps_finished", len(done.sweeps_finished))
        pruned = self.store.prune() + self.sweeps.prune()
        if pruned:
            log.info("forgot %d finished jobs and sweeps past their retention", pruned)

    def _take_over(self, done: Round, deadline: float) -> None:
        running = self.store.ids("running")
        leased = self._exists([self.store.lease_key(j) for j in running])
        # Jobs sent again lately wait for their guard: the batch goes to lost jobs not yet sent.
        sent = self._exists([self.store.takeover_key(j) for j in running])
        for job_id in [j for j, held, again in zip(running, leased, sent) if not (held or again)][:BATCH]:
            if time.monotonic() > deadline:
                return
            job = self.store.get(job_id)
            if job is None or job.status != "running":
                continue
            if self._send_again(
                job, "lost its worker (%s)" % (job.worker.host if job.worker else "unknown"), TAKEOVER_GUARD_S
            ):
                done.taken_over.append(job_id)

    def _resend_in_flight(self, done: Round, deadline: float) -> None:
        """A unit sent before the bound whose jobs still wait, none under a lease: its message was lost."""
        cutoff = time.time() - self.reconcile_after_s
        for unit, sent_at in list(self.dispatch.in_flight().items())[:BATCH]:
            if time.monotonic() > deadline:
                return
            if sent_at > cutoff:
                continue
            jobs = [j for j in self.store.get_many(self._jobs_of(unit)) if j is not None]
            queued = [j for j in jobs if j.status == "queued"]
            if not queued or any(self._exists([self.store.lease_key(j.id) for j in jobs])):
                continue
            if self._send_again(queued[0], f"sent at {clock.iso(int(sent_at * 1000))}", self.reconcile_after_s):
                done.resent.append(queued[0].id)

    def _resend_queued(self, done: Round, deadline: float) -> None:
        """A queued job past the bound that neither waits in its queue nor was sent: queued for its turn."""
        redis = self.store.redis
        cursor_key = f"{self.store.reconciler_key()}:cursor"  # the scan goes on where the last round stopped
        start = float(redis.get(cursor_key) or "-inf")
        batch = redis.zrangebyscore(
            self.store.index_key("queued"), f"({start}", "+inf", start=0, num=BATCH, withscores=True
        )
        pairs = scored(batch)
        redis.set(cursor_key, pairs[-1][1] if len(pairs) == BATCH else "-inf")
        cutoff = time.time() - self.reconcile_after_s
        for job in filter(None, self.store.get_many([text(m) for m, _ in pairs])):
            if time.monotonic() > deadline:
                return
            if job.status != "queued" or clock.parse(job.created_at) > cutoff:
                continue
            unit = unit_id(job.id, *((job.sweep.sweep_id, job.sweep.group) if job.sweep else ()))
            if self.dispatch.state(unit)[0] is not None or redis.exists(self.store.lease_key(job.id)):
                continue
            message, covered = self._message(job)
            log.warning("job %s queued since %s is in no queue: queueing it", job.id, job.created_at)
            if self.dispatch.enqueue(job.owner, [(message, covered)]):
                done.resent.append(job.id)

    def _message(self, job: Job) -> tuple[tasks.Message, list[str]]:
        """The task of the job's unit (a trial: its group's) and the jobs it covers."""
        if job.sweep is None:
            return tasks.train_job(job.id, job.params), [job.id]
        covered = self.sweeps.group_jobs(job.sweep.sweep_id, job.sweep.group)
        return tasks.train_group(job.sweep.sweep_id, job.sweep.group, covered), covered

    def _jobs_of(self, unit: str) -> list[str]:
        raw = self.store.redis.hget(f"{self.dispatch.keys}:units", unit)
        return json.loads(raw)["jobs"] if raw else []

    def _send_again(self, job: Job, why: str, guard_s: float) -> bool:
        """Send the job's task (a trial: its group's) again, once per guard_s; False when sent lately."""
        redis = self.store.redis
        if not redis.set(self.store.takeover_key(job.id), 1, nx=True, ex=max(1, int(guard_s))):
            return False
        message, covered = self._message(job)
        log.warning("job %s %s: sending it to the queue again", job.id, why)
        try:
            self.send(message)
        except Exception:
            redis.delete(self.store.takeover_key(job.id))  # not sent: the next round tries again
            raise
        self.dispatch.sent(job.owner, message, covered)  # in flight: it occupies a worker process again
        for other in covered:  # a group's other trials are covered by this sending
            redis.set(self.store.takeover_key(other), 1, ex=max(1, int(guard_s)))
        return True

    def _finish_sweeps(self, done: Round, deadline: float) -> None:
        redis = self.store.redis
        for member in redis.srandmember(self.sweeps.active_key, BATCH) or []:
            if time.monotonic() > deadline:
                return
            sweep_id = text(member)
            raw = redis.hmget(self.sweeps.key(sweep_id), "status", "job_ids")
            if raw[0] is None or json.loads(raw[0]) in FINISHED:
                redis.srem(self.sweeps.active_key, sweep_id)  # ended, or forgotten
                continue
            statuses = redis.pipeline(transaction=False)
            for job_id in json.loads(raw[1] or "[]"):
                statuses.hget(self.store.key(job_id), "status")
            if not all(s is not None and json.loads(s) in FINISHED for s in statuses.execute()):
                continue
            if redis.exists(self.sweeps.finish_lease_key(sweep_id)):
                continue  # being finished now
            guard = f"{self.store.prefix}:finishing:{sweep_id}"
            if not redis.set(guard, 1, nx=True, ex=max(1, int(self.reconcile_after_s))):
                continue
            log.warning("sweep %s: every trial has ended but the sweep has not; finishing it", sweep_id)
            try:
                self.send(tasks.finish_sweep(sweep_id))
            except Exception:
                redis.delete(guard)
                raise
            done.sweeps_finished.append(sweep_id)

    def _exists(self, keys: list[str]) -> list[bool]:
        pipe = self.store.redis.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return [bool(n) for n in pipe.execute()]
