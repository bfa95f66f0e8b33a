"""Sweep records in Redis: one hash per sweep beside its trials' job records, and a count of groups left.

A sweep's status moves as a job's does (contract.job.TRANSITIONS); its trials' progress is read from
their job records. The group that brings the count to zero finishes the sweep: a counter rather than a
Celery chord, because a group sent again after its worker was lost (or delivered twice) must count once,
and a chord needs every header task to succeed under a result backend and to be sent only once.
"""

import json
import time
import uuid
from typing import Any

from redis.client import Pipeline
from redis.exceptions import WatchError

from contract import clock, job_scripts, sweep_summary
from contract.clock import now
from contract.fence import Fence, Step
from contract.job import FINISHED, Job, TrialOf, sources
from contract.job_store import JobStore, QuotaExceeded, encode
from contract.params import TrainingParams
from contract.redis_values import hash_fields, scored, text
from contract.sweep import SweepRequest
from contract.sweep_record import Sweep, SweepProgress, SweepSummary, leaderboard, trial_of

# What trial_of reads of a trial's job record.
TRIAL_FIELDS = ("status", "progress", "metrics", "evaluation", "stopped_early", "rungs", "pruned", "error", "sweep")


class SweepStore:
    """The sweeps under the job store's key prefix."""

    def __init__(self, jobs: JobStore):
        self.jobs, self.redis, self.prefix = jobs, jobs.redis, jobs.prefix
        self._set_if = self.redis.register_script(job_scripts.SET_IF)
        self.tally_script = self.redis.register_script(sweep_summary.TALLY)
        self.keep_script = self.redis.register_script(sweep_summary.KEEP)

    def key(self, sweep_id: str) -> str:
        """The Redis key of the sweep's record."""
        return f"{self.prefix}:sweep:{sweep_id}"

    def create(
        self,
        request: SweepRequest,
        trials: list[TrainingParams],
        groups: list[list[int]],
        owner: str | None = None,
        max_active: int = 0,
        group_size: int = 0,
    ) -> Sweep:
        """Record a queued sweep and a queued job per trial, all or none; QuotaExceeded when owner already has
        max_active (0: no limit) sweeps queued or running, counted with the write: two at once cannot both pass."""
        sweep_id = str(uuid.uuid4())
        seq = self.redis.incr(f"{self.prefix}:sweep-seq")
        while True:
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    if owner and max_active:
                        pipe.watch(f"{self.prefix}:sweeps:owner:{owner}")  # another of owner's sweeps: count again
                        if self.active(owner) >= max_active:
                            raise QuotaExceeded(f"{max_active} sweeps queued or running")
                        pipe.multi()
                    sweep = self._write(pipe, sweep_id, seq, request, trials, groups, owner, group_size)
                    pipe.execute()
                    return sweep
                except WatchError:
                    continue

    def create_trials(
        self,
        pipe: Pipeline,
        sweep_id: str,
        trials: list[TrainingParams],
        groups: list[list[int]],
        owner: str | None,
        first_trial: int = 0,
        first_group: int = 0,
    ) -> list[Job]:
        """Queue the writes of the trials' jobs: trial first_trial + i, in group first_group + g of groups (whose
        members are trial numbers)."""
        group_of = {t: first_group + g for g, members in enumerate(groups) for t in members}
        return [
            self.jobs.create(
                p.model_dump(),
                p.total_steps,
                owner=owner,
                transaction=pipe,
                sweep=TrialOf(sweep_id=sweep_id, trial=first_trial + i, group=group_of[first_trial + i]),
            )
            for i, p in enumerate(trials)
        ]

    def _write(
        self,
        pipe: Pipeline,
        sweep_id: str,
        seq: int,
        request: SweepRequest,
        trials: list[TrainingParams],
        groups: list[list[int]],
        owner: str | None,
        group_size: int,
    ) -> Sweep:
        """Queue the writes of the sweep and its trials; the sweep as get() will read it (not read back: 256 records)."""
        jobs = self.create_trials(pipe, sweep_id, trials, groups, owner)
        values = request.configurations()
        record = {
            "id": sweep_id,
            "name": request.name,
            "status": "queued",
            "owner": owner,
            "created_at": now(),
            "request": request.model_dump(exclude_none=True),
            "groups": groups,
            "job_ids": [j.id for j in jobs],
            "values": values,
            "seq": seq,
            "cancel_requested": False,
            "batches": 1,
            "planned": request.planned(),  # more than job_ids while a tpe search has batches to ask
            "group_size": group_size,  # what a tpe search's later batches are grouped by
        }
        pipe.hset(self.key(sweep_id), mapping=hash_fields({**encode(record), "groups_left": str(len(groups))}))
        pipe.zadd(f"{self.prefix}:sweeps", {sweep_id: seq})
        pipe.sadd(self.active_key, sweep_id)
        if owner:
            pipe.zadd(f"{self.prefix}:sweeps:owner:{owner}", {sweep_id: seq})
        stored = json.loads(json.dumps(record))  # as a read would decode it
        return Sweep(
            **{k: v for k, v in stored.items() if k in Sweep.model_fields},
            progress=SweepProgress(trials=len(jobs), planned=record["planned"], fraction=0.0),
            trials=[trial_of(job, v) for job, v in zip(jobs, stored["values"])],
        )

    @property
    def active_key(self) -> str:
        """The set of sweeps not yet ended (what the reconciler looks at)."""
        return f"{self.prefix}:sweeps:active"

    def done_key(self, sweep_id: str) -> str:
        """The set of the sweep's groups counted as finished."""
        return f"{self.key(sweep_id)}:groups-done"

    def finish_lease_key(self, sweep_id: str) -> str:
        """The lease of the attempt that ends the sweep (registers its best model, closes its run)."""
        return f"{self.prefix}:lease:sweep:{sweep_id}"

    def raw(self, sweep_id: str, curves: bool = False) -> dict[str, Any] | None:
        """The sweep's stored fields, decoded (the trials' loss curves only when asked for)."""
        raw = {text(k): v for k, v in self.redis.hgetall(self.key(sweep_id)).items()}
        return {k: json.loads(v) for k, v in raw.items() if curves or not k.startswith("curves_")} or None

    def group_bests(self, sweep_id: str) -> dict[int, dict[str, Any]]:
        """Each group's best trial whose model that group logged (group_best_{g}), by group."""
        found = self.redis.hscan_iter(self.key(sweep_id), match="group_best_*")
        return {int(text(k).rsplit("_", 1)[1]): json.loads(v) for k, v in found}

    def head(self, sweep_id: str) -> dict[str, Any] | None:
        """The sweep's owner, status and trials' job ids, or None: what a cancel needs, without reading the trials."""
        raw = self.redis.hmget(self.key(sweep_id), "owner", "status", "job_ids")
        if raw[1] is None:
            return None
        return dict(zip(("owner", "status", "job_ids"), (json.loads(v) if v is not None else None for v in raw)))

    def get(self, sweep_id: str) -> Sweep | None:
        """The sweep with its trials as their job records say, or None."""
        record = self.raw(sweep_id)
        if record is None:
            return None
        rows = self._trial_rows(record["job_ids"])
        found = [
            (trial_of(job, values), job.progress.steps)
            for job, values in zip(rows, record["values"])
            if job is not None
        ]
        trials = [t for t, _ in found]
        finished = [t for t in trials if t.status in FINISHED]
        steps = sum(n for _, n in found) or 1
        done = sum(
            (1.0 if t.status in FINISHED or t.pruned else t.fraction) * n for t, n in found
        )  # early stops, pruned
        made = len(record["job_ids"])
        planned = max(made, record.get("planned", made))
        progress = SweepProgress(
            trials=made,
            planned=planned,
            finished=len(finished),
            succeeded=sum(t.status == "succeeded" for t in trials),
            fraction=round(done / steps * made / planned, 4),  # trials not made yet: as long as those made
        )
        fields = {k: v for k, v in record.items() if k in Sweep.model_fields}
        return Sweep(**fields, progress=progress, trials=trials, leaderboard=leaderboard(trials))

    def _trial_rows(self, job_ids: list[str]) -> list[Job | None]:
        """The trials' jobs with only the fields a trial's line shows (a whole record each is three times the reading)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.jobs.key(job_id), TRIAL_FIELDS)
        return [
            Job.model_validate(
                {
                    "id": job_id,
                    "params": {},
                    "created_at": "",
                    **{k: json.loads(v) for k, v in zip(TRIAL_FIELDS, raw) if v is not None},
                }
            )
            if raw[0] is not None
            else None
            for job_id, raw in zip(job_ids, pipe.execute())
        ]

    def group_jobs(self, sweep_id: str, group: int) -> list[str]:
        """The job ids of a group's trials, in order (what its task is sent with)."""
        record = self.raw(sweep_id)
        return [record["job_ids"][t] for t in record["groups"][group]] if record else []

    def active(self, owner: str, newest: int = 100) -> int:
        """How many of owner's newest sweeps are queued or running."""
        pipe = self.redis.pipeline()
        for member in self.redis.zrevrange(f"{self.prefix}:sweeps:owner:{owner}", 0, newest - 1):
            pipe.hget(self.key(text(member)), "status")
        return sum(raw is not None and json.loads(raw) not in FINISHED for raw in pipe.execute())

    def list(self, limit: int, cursor: int | None, owner: str | None = None) -> tuple[list[SweepSummary], int | None]:
        """Newest first (owner's only, when given), summed up without their trials; the cursor is the sequence number
        of the last sweep shown. One round trip for the page, whatever the history."""
        index = f"{self.prefix}:sweeps:owner:{owner}" if owner else f"{self.prefix}:sweeps"
        top = f"({cursor}" if cursor is not None else "+inf"
        batch = scored(self.redis.zrevrangebyscore(index, top, "-inf", start=0, num=limit + 1, withscores=True))
        found = sweep_summary.summaries(self, [text(member) for member, _ in batch[:limit]])
        return [s for s in found if s is not None], (int(batch[limit - 1][1]) if len(batch) > limit else None)

    def update(self, sweep_id: str, **fields: Any) -> None:
        """Overwrite fields other than the status."""
        assert "status" not in fields, "status changes go through move()"
        self.redis.hset(self.key(sweep_id), mapping=hash_fields(encode(fields)))

    def move(self, sweep_id: str, status: str, only_from: set[str] | None = None, **fields: Any) -> bool:
        """Move the sweep to status if the job state machine allows it from where it is (or only_from); sets fields."""
        allowed = (sources(status) - {status}) & (only_from or set(sources(status)))
        if status in FINISHED:
            fields.setdefault("finished_at", now())
        args = [json.dumps(encode({"status": status, **fields})), "", "", *allowed]
        moved = self._set_if(keys=[self.key(sweep_id)], args=args) == 1
        if moved and status in FINISHED:
            self.redis.srem(self.active_key, sweep_id)
        return moved

    def request_cancel(self, sweep_id: str) -> None:
        """Flag the sweep as cancelled by its user (its trials are cancelled one by one)."""
        self.update(sweep_id, cancel_requested=True)

    def group_finished(self, sweep_id: str, group: int) -> bool:
        """Count a group as finished, once however often it is reported; True for the one that finished the sweep.

        The same step an attempt's fenced end takes, without leases: a group whose trials all ended before it ran.
        """
        step = Step(Fence("", ())).group_done(self.key(sweep_id), self.done_key(sweep_id), group)
        return self.jobs.fenced.run(step) == [1]

    def prune(self, batch: int = 500) -> int:
        """Forget finished sweeps past the jobs' retention (their trials go with the jobs); returns how many."""
        cutoff = time.time() - self.jobs.retention_s
        gone = 0
        for member in self.redis.zrange(f"{self.prefix}:sweeps", 0, batch - 1):
            sweep_id = text(member)
            record = self.raw(sweep_id) or {}
            if record and not (record.get("finished_at") and clock.parse(record["finished_at"]) < cutoff):
                continue
            self.redis.delete(self.key(sweep_id), self.done_key(sweep_id))
            self.redis.srem(self.active_key, sweep_id)
            self.redis.zrem(f"{self.prefix}:sweeps", sweep_id)
            if record.get("owner"):
                self.redis.zrem(f"{self.prefix}:sweeps:owner:{record['owner']}", sweep_id)
            gone += 1
        return gone
