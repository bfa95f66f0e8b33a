"""What an attempt publishes once its trials are saving: a job's registered version, or a group's best model.

Runs in the child process that trained (it imports TensorFlow through MLflow's flavour).
"""

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from contract.fence import Step
from contract.job import Job
from contract.job_store import encode
from contract.provenance import Provenance
from contract.sweep_record import rank_key
from contract.sweep_store import SweepStore
from worker.attempt import sweep_end
from worker.engine import export
from worker.retry import Outage
from worker.tracking.mlflow_retry import mlflow_outage
from worker.tracking.model_upload import log_model
from worker.tracking.publish import Candidate, publish
from worker.tracking.registry import Registry, champion_lock
from worker.tracking.tracked_run import TrackedRun

if TYPE_CHECKING:
    from worker.attempt.attempt import Attempt
    from worker.engine.results import TrainingResult

log = logging.getLogger(__name__)


def registry(attempt: "Attempt", run: TrackedRun) -> Registry:
    """The registry as this attempt's run reaches it (its MLflow calls guarded by the attempt's leases)."""
    s = attempt.settings
    return Registry(
        run.client,
        run.outage,
        attempt.store.redis,
        champion_lock(attempt.store.prefix),
        s.registered_model,
        s.champion_alias,
        s.champion_min_accuracy,
    )


def publish_job(attempt: "Attempt", result: "TrainingResult") -> list[dict[str, Any]]:
    """Log the job's model, register it, record it (fenced) and gate it; the job's end fields."""
    job, run = attempt.jobs[0], attempt.runs[0]
    attempt.loss_history(0, result)
    scores = result.evaluated()
    recorded = job.model.model_dump() if job.model is not None else None  # an earlier attempt's, as it recorded it
    logged: dict = {}
    if recorded is None:
        assert attempt.serving_module is not None, "a job's serving module is traced while it trains"
        logged = log_model(
            run.client, run.run_id, job.id, result, run.outage, attempt.serving_module.result(), run.experiment_id
        )

    def record(model: dict, prov: Provenance) -> None:
        attempt.write(attempt.model_step(job.id, model, prov), "recording the model's version")

    candidate = Candidate(job.id, run.run_id, logged, scores.echo_accuracy, scores.loss)
    model = publish(registry(attempt, run), candidate, record, recorded, resumed=attempt.ctx.claim.resumed)
    return [{"model": model}]


def publish_group(attempt: "Attempt", results: list, saving: list[bool]) -> list[dict[str, Any]]:
    """Every saved trial's loss history; the best one's (a pruned trial ranks below those that went further)
    model logged into its run and kept, with every trial's curve, on the sweep's record (fenced) for the sweep's end,
    unless another group's logged best already ranks above it."""
    scored = [(i, dataclasses.asdict(r.evaluation)) for i, (r, kept) in enumerate(zip(results, saving)) if kept]
    for i, _ in scored:
        attempt.loss_history(i, results[i])
    indexes = [trial_index(j) for j in attempt.jobs]
    sweeps, (sweep_id, group) = SweepStore(attempt.store), attempt.unit.sweep
    fields: dict[str, Any] = {f"curves_{group}": sweep_end.thin_curves({t: r.losses for t, r in zip(indexes, results)})}
    keys = {i: rank_key(results[i].pruned, d["echo_accuracy"], d["loss"], indexes[i]) for i, d in scored}
    if keys:
        best = min(keys, key=keys.__getitem__)
        above = outranked_by(sweeps, attempt.ctx.redis_retry, sweep_id, group, keys[best])
        if above is None:
            fields[f"group_best_{group}"] = log_best(attempt, results[best], best, [i for i in keys if i != best])
        else:
            log.info(
                "%s: its best ranks below trial %d's, logged by its group: no model logged", attempt.unit.label, above
            )
    attempt.write(Step(attempt.fence).hset(sweeps.key(sweep_id), encode(fields)), "recording the group's best")
    return [{} for _ in attempt.jobs]


def log_best(attempt: "Attempt", result: "TrainingResult", i: int, others: list[int]) -> dict[str, Any]:
    """Log trial i's model into its run (the others' runs closing meanwhile); what the sweep's end needs of it."""
    job, run, s = attempt.jobs[i], attempt.runs[i], attempt.settings
    for k in others:
        attempt.close_early(k)
    # Beside the group's gate (its runs' files and last points): the longest errand of the group's end goes first.
    outage = mlflow_outage(s.mlflow_tracking_uri, s.mlflow_retry_s, guard=attempt.ctx.keeper.check)
    assert attempt.serving_module is not None, "the serving module is traced while the trials train"
    attempt.serving_module.result()
    module = export.traced(result.params)  # the one just traced, with the best one's echo_step
    logged = log_model(run.client, run.run_id, job.id, result, outage, module, run.experiment_id)
    scores = result.evaluated()
    return {
        "trial": trial_index(job),
        "job_id": job.id,
        "run_id": run.run_id,
        "logged": logged,
        "echo_accuracy": scores.echo_accuracy,
        "loss": scores.loss,
    }


def outranked_by(sweeps: SweepStore, retry: Outage, sweep_id: str, group: int, key: tuple) -> int | None:
    """The trial of another group that ranks above key (rank_key) and whose model its group logged before its trials
    succeeded, if any: this group's best can then never be the sweep's, and its model need not be logged."""

    def read() -> list:
        bests = [b for g, b in sweeps.group_bests(sweep_id).items() if g != group]
        return list(zip(bests, sweeps.jobs.get_many([b["job_id"] for b in bests])))

    found = retry.call(read, "reading the other groups' bests")
    above = [
        rank_key(job.pruned, b["echo_accuracy"], b["loss"], b["trial"])
        for b, job in found
        if job is not None and job.status == "succeeded"  # ended: it stays in the leaderboard with its model
    ]
    return min(above)[-1] if above and min(above) < key else None


def trial_index(job: Job) -> int:
    """A trial job's index in its sweep."""
    assert job.sweep is not None, f"job {job.id} is not a sweep's trial"
    return job.sweep.trial
