"""One attempt at a task, the same path for a job and for a sweep's group: its N ≥ 1 trials are claimed,
trained as one program, checkpointed, published and ended together, every write through the attempt's fence.

A job is the group of one: its own run with the tutorial's figure, its model registered and gated.
A group's trials train under the sweep's run; only the best one's model is logged, for the sweep's end.
"""

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from contract import clock, provenance
from contract.clock import now
from contract.fence import Step
from contract.job import Job
from contract.job_store import JobStore, encode
from contract.params import TrainingParams
from contract.sweep import Halving
from contract.sweep_store import SweepStore
from worker.attempt import runs, sweep_end
from worker.attempt.checkpoints import Checkpoints
from worker.attempt.claim import Claim
from worker.attempt.lease import LeaseKeeper
from worker.attempt.unit import Unit
from worker.retry import BestEffort, Outage, redis_transient
from worker.settings import WorkerSettings
from worker.tracking.progress import ProgressWriter
from worker.tracking.tracked_run import LOSS_HISTORY, TrackedRun, loss_history_csv

if TYPE_CHECKING:  # TensorFlow is imported in the child process that runs the task, never before fork
    from worker.engine.checkpoint import GroupCheckpoint
    from worker.engine.results import StepReport, TrainingResult

log = logging.getLogger(__name__)


class JobTimeLimit(Exception):
    """The job ran past its time limit."""


class WorkerLost(Exception):
    """The job lost its worker too many times."""


@dataclasses.dataclass
class Context:
    """What an attempt works with: where records live, its settings, its claim and leases, Redis's retries."""

    store: JobStore
    settings: WorkerSettings
    unit: Unit
    claim: Claim
    keeper: LeaseKeeper
    redis_retry: Outage


class Attempt:
    """The trials of one claim, from their runs' opening to one fenced end."""

    def __init__(self, ctx: Context):
        self.ctx, self.store, self.settings, self.unit = ctx, ctx.store, ctx.settings, ctx.unit
        assert ctx.claim.fence is not None, "an attempt runs on a claim that took its leases"
        self.fence, self.job_ids = ctx.claim.fence, ctx.claim.job_ids
        self.jobs: list[Job] = []  # their records, as the attempt read them at its start
        self.params: list[TrainingParams] = []
        self.checkpoints = Checkpoints(self.store, self.unit.name)
        self.best_effort = BestEffort("Redis", redis_transient)  # shared: one outage pauses all of them
        self.runs: list[TrackedRun] = []
        self.writers: list[ProgressWriter] = []
        self.halving: Halving | None = None  # a halving sweep's scheduler
        self.wrapped: set[int] = set()  # trials wrapped up once pruned (their scores and loss history sent)
        self.closing: dict[int, Future] = {}  # runs closed FINISHED before the attempt's end, by trial index
        self._sent: dict[int, tuple[bool, bool]] = {}  # what an earlier attempt sent of a trial it pruned
        self._closer: ThreadPoolExecutor | None = None
        # The trials' runs being opened and recorded, and why they could not be recorded.
        self._opening: Future[tuple[list[TrackedRun], Exception | None]] | None = None
        self._held: list[list] = []  # the engine's reports while the runs are being opened

    # Every write to Redis after the claim goes through write() or record(): refused once the leases are lost.
    def write(self, step: Step, what: str, release: bool = False) -> list[int]:
        """A fenced step, retried while Redis is away (up to its limit)."""
        self.ctx.keeper.check()
        return self.ctx.redis_retry.call(lambda: self.store.fenced.run(step, release), what)

    def record(self, job_id: str, fields: dict[str, Any]) -> None:
        """One job's fields in a fenced step, once (progress: skipped while Redis is away)."""
        self.ctx.keeper.check()
        self.store.fenced.run(Step(self.fence).hset(self.store.key(job_id), encode(fields)))

    def run(self) -> tuple[str, bool]:
        """Train and end every trial; returns the attempt's outcome and whether it ended the sweep's last group."""
        found = self.ctx.redis_retry.call(lambda: self.store.get_many(self.job_ids), "reading the jobs")
        if missing := [job_id for job_id, job in zip(self.job_ids, found) if job is None]:
            raise LookupError(f"claimed jobs without a record: {', '.join(missing)}")
        self.jobs = [job for job in found if job is not None]
        self.params = [TrainingParams.model_validate(j.params) for j in self.jobs]
        parent = self._start_sweep() if not self.unit.is_job else None
        # A fresh group's runs are created (a request each) and recorded while its trials start training: the
        # engine's reports wait until they are open. A job's, and a resumed attempt's (it reads what its runs hold), before.
        self.start_opening(parent)
        if self.unit.is_job or self.ctx.claim.resumed:
            self.runs_ready()
        lost = self.ctx.claim.attempts - 1
        if lost >= self.settings.max_worker_losses:  # rejecting on worker loss must not loop for ever
            raise WorkerLost(f"the worker running this job was lost {lost} times; giving up")
        checkpoint = self._resume() if self.ctx.claim.resumed else None
        from worker.engine.results import TrainingCancelled

        try:
            results = self._train(checkpoint)
        except TrainingCancelled:
            return "cancelled", self.end(["cancelled"] * len(self.job_ids), [{}] * len(self.job_ids))
        return self._save(results)

    def start_opening(self, parent: dict[str, str] | None) -> None:
        """Open the trials' runs (under the sweep's parent run) and record them, in a thread: runs_ready waits."""
        opening = ThreadPoolExecutor(1, thread_name_prefix="open-runs")
        self._opening = opening.submit(self._open_and_record, parent)
        opening.shutdown(wait=False)

    def runs_ready(self) -> None:
        """Once: wait for the trials' runs, opened and recorded in the jobs (raising why they could not be), make
        the progress writers and hand them the reports held meanwhile."""
        if self.writers:
            return
        assert self._opening is not None, "run() opens the runs first"
        self.runs, error = self._opening.result()  # held even if not recorded: fail() closes them, abandon() leaves
        if error is not None:
            raise error
        every_s, points = (
            (0.1, self.settings.loss_points_max) if self.unit.is_job else (0.5, self.settings.trial_loss_points_max)
        )  # the engine reports every ~50 ms
        self.writers = [
            ProgressWriter(
                partial(self.record, job.id), run, p.total_steps, self.best_effort, points, every_s, self.unit.is_job
            )
            for job, run, p in zip(self.jobs, self.runs, self.params)
        ]
        held, self._held = self._held, []
        for reports in held:
            self._progress(reports)

    def _open_and_record(self, parent: dict[str, str] | None) -> "tuple[list[TrackedRun], Exception | None]":
        """Open the trials' runs and record them in the jobs (fenced) at once, so that a takeover finds them even if
        this attempt dies compiling; why they could not be recorded goes to runs_ready, on the attempt's path."""
        opened = runs.open_runs(
            self.settings,
            self.jobs,
            parent["run_id"] if parent else None,
            self.ctx.keeper.check,
            parent["experiment_id"] if parent else None,
        )
        step = Step(self.fence)
        for job, run in zip(self.jobs, opened):
            link = {"experiment_id": run.experiment_id, "run_id": run.run_id, "url": run.url}
            step.hset(self.store.key(job.id), encode({"mlflow": link}))
        try:
            self.write(step, "recording the runs")
        except Exception as exc:  # noqa: BLE001 (raised again by runs_ready, on the attempt's own thread)
            return opened, exc
        return opened, None

    def _start_sweep(self) -> dict[str, str]:
        sweeps, (sweep_id, _) = SweepStore(self.store), self.unit.sweep
        self.ctx.redis_retry.call(lambda: sweeps.move(sweep_id, "running", started_at=now()), "starting the sweep")
        record = self.ctx.redis_retry.call(lambda: sweeps.raw(sweep_id), "reading the sweep") or {}
        if scheduler := record.get("request", {}).get("scheduler"):
            self.halving = Halving.model_validate(scheduler)
        return self.ctx.redis_retry.call(
            lambda: sweep_end.parent_run(sweeps, self.settings, sweep_id), "opening the sweep's run"
        )

    def _resume(self) -> "GroupCheckpoint | None":
        """Each run gets what the checkpoint has and it lacks; progress never goes back."""
        checkpoint = self.ctx.redis_retry.call(self.checkpoints.load, "loading the checkpoint")
        if checkpoint is not None and len(checkpoint.models) != len(self.jobs):
            checkpoint = None  # taken by a different set of trials: start over
        models = checkpoint.models if checkpoint is not None else [None] * len(self.jobs)
        step = Step(self.fence)
        for job, writer, model in zip(self.jobs, self.writers, models):
            writer.fraction = job.progress.fraction
            writer.catch_up(model)
            resumed = [*(r.model_dump() for r in job.resumed), {"at": now(), "step": model.step if model else 0}]
            step.hset(self.store.key(job.id), encode({"resumed": resumed}))
        self.write(step, "recording the resume")
        return checkpoint

    def _train(self, checkpoint: "GroupCheckpoint | None") -> "list[TrainingResult]":
        # TensorFlow is imported here, in the child process that runs the task, never before fork.
        from worker.attempt.rungs import Rungs
        from worker.engine import export
        from worker.engine.group import train_group

        # Traced while the trials train (any of a group's has the shapes of its best), kept by the process.
        ahead = ThreadPoolExecutor(1, thread_name_prefix="export")
        self.serving_module = ahead.submit(export.traced, self.params[0])
        ahead.shutdown(wait=False)

        def on_checkpoint(c: "GroupCheckpoint") -> None:
            self.ctx.keeper.check()
            self.best_effort.call(lambda: self.checkpoints.save(self.fence, c), "saving a checkpoint")

        return train_group(
            self.params,
            on_progress=self._progress,
            should_stop=self._stop_check(),
            resume=checkpoint,
            on_checkpoint=on_checkpoint,
            halving=self.halving,
            on_rung=Rungs(self) if self.halving is not None else None,
        )

    def _progress(self, reports: "list[StepReport | None]") -> None:
        if not self.writers:
            assert self._opening is not None, "the runs are being opened"
            if not self._opening.done():
                self._held.append(reports)
                return
            self.runs_ready()
        for writer, report in zip(self.writers, reports):
            if report is not None:  # None: a trial that stopped early, at its target_loss, or was pruned
                writer(report if self.unit.is_job else dataclasses.replace(report, window=None))

    def _stop_check(self) -> Callable[[], bool]:
        """The engine's cancel check: lost leases, every trial's cancel requested, or the shortest time limit passed."""
        cap = self.settings.max_job_seconds
        limit = min(min(p.time_limit_s or cap for p in self.params), cap)
        started = min(clock.parse(j.started_at) if j.started_at else time.time() for j in self.jobs)  # across attempts
        keys = [self.store.key(j.id) for j in self.jobs]

        def cancelled() -> bool:
            pipe = self.store.redis.pipeline()
            for key in keys:
                pipe.hget(key, "cancel_requested")
            return all(raw == b"true" for raw in pipe.execute())

        def should_stop() -> bool:
            self.ctx.keeper.check()
            if time.time() - started > limit:
                raise JobTimeLimit(f"the job ran past its time limit of {limit} s")
            # While Redis is away no cancel request can be read: training goes on.
            return bool(self.best_effort.call(cancelled, "checking for cancel requests", False))

        return should_stop

    def _save(self, results: "list[TrainingResult]") -> tuple[str, bool]:
        """Enter the saving phase (a trial cancelled first ends cancelled), publish, close the runs, end."""
        self.ctx.keeper.check()
        self.runs_ready()
        for writer, result in zip(self.writers, results):
            writer.finish(len(result.losses))  # its last record goes out before the phase turns to saving
        step = Step(self.fence)
        for job in self.jobs:
            step.hset_unless(self.store.key(job.id), encode({"phase": "saving"}), "cancel_requested", True)
        saving = [bool(s) for s in self.write(step, "entering the saving phase")]
        step = Step(self.fence)
        for i, (job, run, result, kept) in enumerate(zip(self.jobs, self.runs, results, saving)):
            if kept:
                scores = dataclasses.asdict(result.evaluated())
                if i not in self.wrapped and not self.sent_before(i)[0]:  # a pruned trial's went at its rung
                    run.add("eval_echo_accuracy", [scores["echo_accuracy"]], len(result.losses))
                    run.add("eval_loss", [scores["loss"]], len(result.losses))
                step.hset(
                    self.store.key(job.id),
                    encode(
                        {
                            "device": result.device,
                            "evaluation": scores,
                            "stopped_early": result.stopped_early,
                            "pruned": result.pruned,
                        }
                    ),
                )
        for run in self.runs:
            run.send_now()  # its last points go while the model is logged, not when the run is closed
        if any(saving):
            self.write(step, "recording the evaluation")
        from worker.attempt import publishing

        if self.unit.is_job:
            fields = publishing.publish_job(self, results[0]) if saving[0] else [{}]
        else:
            fields = publishing.publish_group(self, results, saving)
        statuses = ["succeeded" if kept else "cancelled" for kept in saving]
        outcome = "succeeded" if all(saving) else "cancelled" if not any(saving) else "finished"
        return outcome, self.end(statuses, fields)

    def end(self, statuses: list[str], fields: list[dict[str, Any]]) -> bool:
        """Close the runs (MLflow first), then one fenced step: every trial's end, the checkpoint gone, the
        group counted, the leases released. A run that cannot be closed fails its trial. True for the
        step that counted a sweep's last group."""
        if not self.writers and self._opening is not None:
            try:
                self.runs_ready()  # to close them
            except Exception:  # not opened or not recorded: the attempt's own path met it first (abandon() leaves them)
                log.warning("%s: the runs were not opened", self.unit.label, exc_info=True)
        for i, closing in self.closing.items():
            closing.result()  # never raises: a run it could not close is closed here again
            if self.runs[i].ended not in (None, runs.RUN_STATUS[statuses[i]]):
                self.runs[i].ended = None  # closed FINISHED early, its trial ends otherwise: closed again
        if self._closer is not None:
            self._closer.shutdown(wait=False)
        errors = (
            runs.close_all(self.runs, [runs.RUN_STATUS[s] for s in statuses]) if self.runs else [None] * len(statuses)
        )
        step = Step(self.fence)
        for job_id, status, extra, error in zip(self.job_ids, statuses, fields, errors):
            if error and status == "succeeded":
                status, extra = "failed", {"error": error}
            step.move(self.store.key(job_id), job_id, status, encode({"finished_at": now(), "phase": None, **extra}))
        for key in self.checkpoints.keys:
            step.delete(key)
        if not self.unit.is_job:
            sweeps, (sweep_id, group) = SweepStore(self.store), self.unit.sweep
            step.group_done(sweeps.key(sweep_id), sweeps.done_key(sweep_id), group)
        done = self.write(step, "recording the ends", release=True)
        for job_id, status in zip(self.job_ids, statuses):
            log.info("job %s %s", job_id, status)
        return not self.unit.is_job and done[-1] == 1

    def fail(self, exc: Exception) -> bool:
        """End every trial failed with a readable reason (its run closed FAILED first)."""
        log.error("%s failed", self.unit.label, exc_info=exc)
        error = f"{type(exc).__name__}: {exc}"
        return self.end(["failed"] * len(self.job_ids), [{"error": error}] * len(self.job_ids))

    def abandon(self) -> None:
        """Stop sending: another attempt carries the trials on in the same runs (those still opening, once open)."""
        for run in self.runs:
            run.abandon()
        if not self.runs and self._opening is not None:  # still opening, or opened and not recorded
            self._opening.add_done_callback(_abandon_opened)

    def model_step(self, job_id: str, model: dict, record: provenance.Provenance) -> Step:
        """The fenced step that makes a version this service's: the job's model and the version's record together."""
        return (
            Step(self.fence)
            .hset(self.store.key(job_id), encode({"model": model}))
            .set(provenance.key(self.store.prefix, record.name, record.version), provenance.encoded(record))
        )

    def wrap_up(self, i: int, trained: int, echo_accuracy: float, loss: float) -> None:
        """A trial pruned at a rung is done training: its last points, held-out scores and loss history go now, and
        its run is closed FINISHED, beside the survivors' training rather than after it (end() closes it again
        should the trial end otherwise)."""
        writer, run = self.writers[i], self.runs[i]
        writer.finish(trained)
        scores_sent, history_sent = self.sent_before(i)
        if not scores_sent:
            run.add("eval_echo_accuracy", [echo_accuracy], trained)
            run.add("eval_loss", [loss], trained)
        if not history_sent:
            losses = writer.losses[:trained].copy()  # every step's loss, as the trial's result holds them
            run.log_artifacts_later(lambda: {LOSS_HISTORY: loss_history_csv(losses)})
        run.send_now()
        self.wrapped.add(i)
        self.close_early(i)

    def sent_before(self, i: int) -> tuple[bool, bool]:
        """Whether trial i's run holds its held-out scores, and its loss history, sent by an earlier attempt that
        pruned it: asked of MLflow once, each apart (that attempt's worker may have died between the two)."""
        if not self.ctx.claim.resumed or self.jobs[i].pruned is None:  # its record says pruned before anything is sent
            return False, False
        if i not in self._sent:
            run = self.runs[i]
            self._sent[i] = (run.logged_count("eval_echo_accuracy") > 0, run.holds(LOSS_HISTORY))
        return self._sent[i]

    def close_early(self, i: int) -> None:
        """Close trial i's run FINISHED from a thread, once its queued points and files are sent; end() waits for it
        and closes the run again should the trial end otherwise. Once per trial: a second call leaves the first."""
        if i in self.closing:
            return
        if self._closer is None:
            self._closer = ThreadPoolExecutor(runs.MLFLOW_CALLS_AT_ONCE, thread_name_prefix="early-ends")
        self.closing[i] = self._closer.submit(runs.close_quietly, self.runs[i], "FINISHED")

    def loss_history(self, i: int, result: "TrainingResult") -> None:
        """Every step's loss as the run's loss_history.csv.gz (and, for a job, the tutorial's final figure)."""
        from worker.engine.figure import render

        if i in self.wrapped or self.sent_before(i)[1]:
            return  # uploaded when it was pruned
        if self.unit.is_job:
            self.runs[i].log_artifacts_later(
                lambda: {
                    "echo_figure.png": render(result.losses, *result.last_window),
                    LOSS_HISTORY: loss_history_csv(result.losses),
                }
            )
        else:
            self.runs[i].log_artifacts_later(lambda: {LOSS_HISTORY: loss_history_csv(result.losses)})


def _abandon_opened(opening: "Future[tuple[list[TrackedRun], Exception | None]]") -> None:
    if opening.exception() is None:
        for run in opening.result()[0]:
            run.abandon()
