"""A sweep's MLflow parent run: opened by the first of its groups to start, finished by the last to end.

The last group registers only the best trial's model (logged into that trial's run by its group),
puts it through the champion gate, and logs the leaderboard and a figure of every trial's loss
curve into the parent run. Each step is idempotent: a group delivered again after its worker was
lost finishes the sweep the same way.
"""

import io
import json
import logging

import numpy as np

from contract import provenance
from contract.clock import now
from contract.job import FINISHED
from contract.sweep_store import SweepStore
from worker import champion
from worker.run_logger import RunLogger
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
CURVE_POINTS = 200  # per trial, for the parent's comparison figure


def parent_run(sweeps: SweepStore, settings: WorkerSettings, sweep_id: str) -> dict:
    """The sweep's parent run link (experiment_id, run_id, url), created once whichever group asks first."""
    record = sweeps.raw(sweep_id)
    if record.get("mlflow"):
        return record["mlflow"]
    with sweeps.redis.lock(f"{sweeps.key(sweep_id)}:parent-lock", timeout=2 * settings.mlflow_retry_s + 120,
                           blocking_timeout=2 * settings.mlflow_retry_s + 120):
        record = sweeps.raw(sweep_id)
        if record.get("mlflow"):
            return record["mlflow"]
        request = record["request"]
        params = {**{f"base.{k}": v for k, v in request.get("params", {}).items()}, "trials": len(record["job_ids"]),
                  "search": "grid" if "grid" in request else "random",
                  "space": json.dumps(request.get("grid") or request["random"]["space"])[:6000]}
        run = RunLogger(settings, sweep_id, params, tags={
            "sweep_id": sweep_id, "mlflow.runName": record.get("name") or f"sweep-{sweep_id[:8]}"})
        run.abandon()  # nothing to stream: the last group reopens it to finish
        link = {"experiment_id": run.experiment_id, "run_id": run.run_id, "url": run.url}
        sweeps.update(sweep_id, mlflow=link)
        return link


def record_group_best(sweeps: SweepStore, sweep_id: str, group: int, best: dict) -> None:
    """Keep the group's best trial (its logged model and scores) for the sweep's end."""
    sweeps.update(sweep_id, **{f"group_best_{group}": best})


def record_curves(sweeps: SweepStore, sweep_id: str, group: int, curves: dict[int, np.ndarray]) -> None:
    """Keep each trial's loss curve, thinned to CURVE_POINTS, for the comparison figure."""
    thin = {str(t): _thin(c).tolist() for t, c in curves.items()}
    sweeps.update(sweep_id, **{f"curves_{group}": thin})


def _thin(losses: np.ndarray) -> np.ndarray:
    if len(losses) <= CURVE_POINTS:
        return losses.astype(float).round(5)
    edges = np.linspace(0, len(losses), CURVE_POINTS + 1).astype(int)
    return np.array([losses[a:b].mean() for a, b in zip(edges[:-1], edges[1:])]).round(5)


def finish(sweeps: SweepStore, settings: WorkerSettings, sweep_id: str) -> str | None:
    """End the sweep once every group has: register and gate the best trial, log the leaderboard; its final status."""
    # Held as long as MLflow may be retried: a second finisher waits rather than registering again.
    with sweeps.redis.lock(f"{sweeps.key(sweep_id)}:finish-lock", timeout=4 * settings.mlflow_retry_s + 600,
                           blocking_timeout=4 * settings.mlflow_retry_s + 600):
        record, sweep = sweeps.raw(sweep_id, curves=True), sweeps.get(sweep_id)
        if sweep is None or sweep.status in FINISHED:
            return None
        run = RunLogger(settings, sweep_id, {}, run_id=record["mlflow"]["run_id"]) if record.get("mlflow") else None
        logged = {b["trial"]: b for g in range(len(sweep.groups)) if (b := record.get(f"group_best_{g}"))}
        # The best trial with a logged model: its group logged its best one's before ending its trials.
        best = None if sweep.cancel_requested else next((logged[r.trial] for r in sweep.leaderboard if r.trial in logged), None)
        model = _register_best(sweeps, settings, run, best) if best else None
        status = "succeeded" if best else ("cancelled" if sweep.cancel_requested else "failed")
        if run is not None:
            _log_parent(run, sweep, record)
            run.end({"succeeded": "FINISHED", "cancelled": "KILLED", "failed": "FAILED"}[status])
        error = None if best or status == "cancelled" else "no trial succeeded"
        moved = sweeps.move(sweep_id, status, error=error,
                            best={"trial": best["trial"], "job_id": best["job_id"], "model": model} if best else None)
        log.info("sweep %s %s", sweep_id, status if moved else f"already ended (would be {status})")
        return status


def _register_best(sweeps: SweepStore, settings: WorkerSettings, run: RunLogger, best: dict) -> dict:
    # TensorFlow (through MLflow's flavor) only here, in the child process that finishes the sweep, never before fork.
    from worker.model_logging import files_digest, register

    client, outage, name = run.client, run.outage, settings.registered_model
    model = register(client, best["run_id"], best["job_id"], best["logged"], name, outage,
                     champion.score_tags(best["echo_accuracy"], best["loss"]))
    digest = best["logged"].get("digest") or files_digest(client, model["name"], model["version"], outage)
    provenance.record(sweeps.redis, sweeps.prefix, provenance.Provenance(
        model["name"], model["version"], best["job_id"], best["run_id"], digest))
    promotion = champion.gate(client, sweeps.redis, f"{sweeps.prefix}:champion-lock", model["name"], model["version"],
                              best["echo_accuracy"], best["loss"], settings.champion_min_accuracy,
                              settings.champion_alias, outage)
    model = {**model, "promoted": promotion.promoted, "promotion": promotion.reason}
    sweeps.jobs.update(best["job_id"], model=model)
    return model


def _log_parent(run: RunLogger, sweep, record: dict) -> None:
    rows = [r.model_dump() for r in sweep.leaderboard]
    columns = ["rank", "trial", "job_id", "echo_accuracy", "loss"]
    table = "\n".join([",".join([*columns, "values"])] + [
        ",".join([*(str(r[c]) for c in columns), json.dumps(r["values"]).replace(",", ";")]) for r in rows])
    curves = {int(t): c for g in range(len(sweep.groups)) for t, c in (record.get(f"curves_{g}") or {}).items()}
    files = {"leaderboard.json": json.dumps(rows, indent=1).encode(), "leaderboard.csv": table.encode() + b"\n",
             "loss_curves.png": _figure(curves, [r["trial"] for r in rows[:5]])}
    if rows:
        run.add("best_eval_echo_accuracy", [rows[0]["echo_accuracy"]], 0)
        run.add("best_eval_loss", [rows[0]["loss"]], 0)
    run.add("trials_succeeded", [sweep.progress.succeeded], 0)
    run.log_artifacts(files)
    run.client.set_tag(run.run_id, "finished_at", now())


def _figure(curves: dict[int, list[float]], highlighted: list[int]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for trial, curve in sorted(curves.items()):
        x = np.linspace(0, 1, len(curve))
        if trial in highlighted:
            ax.plot(x, curve, linewidth=2, label=f"trial {trial} (#{highlighted.index(trial) + 1})")
        else:
            ax.plot(x, curve, linewidth=0.7, color="grey", alpha=0.5)
    ax.set_title(f"loss of {len(curves)} trials (the best five in colour)")
    ax.set_xlabel("fraction of training")
    ax.set_ylabel("loss")
    if highlighted:
        ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
