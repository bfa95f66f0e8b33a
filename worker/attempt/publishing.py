"""What an attempt publishes once its trials are saving: a job's registered version, or a group's best model.

Runs in the child process that trained (it imports TensorFlow through MLflow's flavour).
"""

import dataclasses
from typing import TYPE_CHECKING, Any

from contract.fence import Step
from contract.job import Job
from contract.job_store import encode
from contract.provenance import Provenance
from contract.sweep_record import rank_key
from contract.sweep_store import SweepStore
from worker.attempt import sweep_end
from worker.engine import export
from worker.tracking.mlflow_retry import mlflow_outage
from worker.tracking.model_upload import log_model
from worker.tracking.publish import Candidate, publish
from worker.tracking.registry import Registry, champion_lock
from worker.tracking.tracked_run import TrackedRun

if TYPE_CHECKING:
    from worker.attempt.attempt import Attempt
    from worker.engine.results import TrainingResult


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
    model logged into its run and kept, with every trial's curve, on the sweep's record (fenced) for the sweep's end."""
    scored = [(i, dataclasses.asdict(r.evaluation)) for i, (r, kept) in enumerate(zip(results, saving)) if kept]
    for i, _ in scored:
        attempt.loss_history(i, results[i])
    indexes = [trial_index(j) for j in attempt.jobs]
    s = attempt.settings
    sweeps, (sweep_id, group) = SweepStore(attempt.store), attempt.unit.sweep
    fields: dict[str, Any] = {f"curves_{group}": sweep_end.thin_curves({t: r.losses for t, r in zip(indexes, results)})}
    if scored:
        i, scores = min(
            scored, key=lambda d: rank_key(results[d[0]].pruned, d[1]["echo_accuracy"], d[1]["loss"], indexes[d[0]])
        )
        job, run = attempt.jobs[i], attempt.runs[i]
        for k, _ in scored:
            if k != i:
                attempt.close_early(k)  # the others' runs close while the best one's model is logged
        # Beside the group's gate (its runs' files and last points): the longest errand of the group's end goes first.
        outage = mlflow_outage(s.mlflow_tracking_uri, s.mlflow_retry_s, guard=attempt.ctx.keeper.check)
        assert attempt.serving_module is not None, "the serving module is traced while the trials train"
        attempt.serving_module.result()
        module = export.traced(results[i].params)  # the one just traced, with the best one's echo_step
        logged = log_model(run.client, run.run_id, job.id, results[i], outage, module, run.experiment_id)
        fields[f"group_best_{group}"] = {
            "trial": indexes[i],
            "job_id": job.id,
            "run_id": run.run_id,
            "logged": logged,
            "echo_accuracy": scores["echo_accuracy"],
            "loss": scores["loss"],
        }
    attempt.write(Step(attempt.fence).hset(sweeps.key(sweep_id), encode(fields)), "recording the group's best")
    return [{} for _ in attempt.jobs]


def trial_index(job: Job) -> int:
    """A trial job's index in its sweep."""
    assert job.sweep is not None, f"job {job.id} is not a sweep's trial"
    return job.sweep.trial
