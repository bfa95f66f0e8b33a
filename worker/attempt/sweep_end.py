"""A sweep's MLflow parent run: opened by the first of its groups to start; and the sweep's end.

The group that ends last (or, should that fail, the reconciler's finish task) registers only the
best trial's model (logged into that trial's run by its group), puts it through the champion gate,
and logs the leaderboard and a figure of every trial's loss curve into the parent run. Each step
is idempotent: an attempt that takes over after a lost finisher ends the sweep the same way.
"""

import io
import itertools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from mlflow.tracking import MlflowClient

from contract import provenance, sweep_batches
from contract.clock import now
from contract.fence import Fence, LeaseLost, Step
from contract.job import FINISHED
from contract.job_store import encode
from contract.provenance import Provenance
from contract.sweep_record import Sweep
from contract.sweep_store import SweepStore
from worker.attempt import lease
from worker.attempt.lease import LeaseKeeper
from worker.attempt.runs import RUN_STATUS
from worker.settings import WorkerSettings
from worker.tracking.mlflow_retry import mlflow_outage
from worker.tracking.tracked_run import TrackedRun

log = logging.getLogger(__name__)
CURVE_POINTS = 200  # per trial, for the parent's comparison figure


def parent_run(sweeps: SweepStore, settings: WorkerSettings, sweep_id: str) -> dict:
    """The sweep's parent run link (experiment_id, run_id, url), created once whichever group asks first."""
    record = _record(sweeps, sweep_id)
    if record.get("mlflow"):
        return record["mlflow"]
    with sweeps.redis.lock(
        f"{sweeps.key(sweep_id)}:parent-lock",
        timeout=2 * settings.mlflow_retry_s + 120,
        blocking_timeout=2 * settings.mlflow_retry_s + 120,
    ):
        record = _record(sweeps, sweep_id)
        if record.get("mlflow"):
            return record["mlflow"]
        request = record["request"]
        params = {
            **{f"base.{k}": v for k, v in request.get("params", {}).items()},
            "trials": record.get("planned") or len(record["job_ids"]),
            "search": "grid" if "grid" in request else "random",
            "space": json.dumps(request.get("grid") or request["random"]["space"])[:6000],
        }
        if "random" in request:
            params["sampler"] = request["random"].get("sampler", "random")
        if request.get("scheduler"):
            params["scheduler"] = json.dumps(request["scheduler"])
        run = TrackedRun(
            settings,
            sweep_id,
            params,
            tags={"sweep_id": sweep_id, "mlflow.runName": record.get("name") or f"sweep-{sweep_id[:8]}"},
        )
        run.abandon()  # nothing to stream: the last group reopens it to finish
        link = {"experiment_id": run.experiment_id, "run_id": run.run_id, "url": run.url}
        sweeps.update(sweep_id, mlflow=link)
        return link


def thin_curves(curves: dict[int, np.ndarray]) -> dict[str, list[float]]:
    """Each trial's loss curve, thinned to CURVE_POINTS, for the comparison figure."""
    return {str(t): _thin(c).tolist() for t, c in curves.items()}


def _thin(losses: np.ndarray) -> np.ndarray:
    if len(losses) <= CURVE_POINTS:
        return losses.astype(float).round(5)
    edges = np.linspace(0, len(losses), CURVE_POINTS + 1).astype(int)
    return np.array([losses[a:b].mean() for a, b in itertools.pairwise(edges)]).round(5)


def finish(sweeps: SweepStore, settings: WorkerSettings, sweep_id: str) -> str | None:
    """End the sweep once all its trials have: register and gate the best trial, log the leaderboard; its final
    status, or None when it has ended already, is not ready, or another attempt is ending it. A tpe search with
    trials left to make gets its next batch instead (contract/sweep_batches.py): "continued".

    The finishing attempt holds a lease of its own (lost with its worker, when the reconciler has
    the sweep finished again) and writes through its fence, as a job's attempt does.
    """
    store = sweeps.jobs
    key = sweeps.finish_lease_key(sweep_id)
    fence = Fence(lease.token(0), (key,))
    taken_at = time.monotonic()
    if not store.redis.set(key, fence.token, nx=True, px=int(settings.lease_ttl_s * 1000)):
        log.info("sweep %s is being finished by another attempt (%s)", sweep_id, store.redis.get(key))
        return None
    keeper = LeaseKeeper(store.redis, fence, settings.lease_ttl_s).start(taken_at)
    try:
        return _finish(sweeps, settings, sweep_id, fence, keeper)
    except LeaseLost as exc:
        log.error("sweep %s: the attempt ending it lost its lease (%s); it writes nothing more", sweep_id, exc)
        return None
    finally:
        keeper.stop(release=True)


def _finish(
    sweeps: SweepStore, settings: WorkerSettings, sweep_id: str, fence: Fence, keeper: LeaseKeeper
) -> str | None:
    record, sweep = sweeps.raw(sweep_id, curves=True), sweeps.get(sweep_id)
    if record is None or sweep is None or sweep.status in FINISHED:
        return None
    if not all(t.status in FINISHED for t in sweep.trials):
        log.info("sweep %s: some trials have not ended; not finished yet", sweep_id)
        return None
    if sweep_batches.pending(record) and not sweep.cancel_requested:
        keeper.check()
        if sweep_batches.add_batch(sweeps, fence, sweep, record):
            return "continued"  # its next batch is queued: the sweep ends after its last
        record, sweep = sweeps.raw(sweep_id, curves=True), sweeps.get(sweep_id)  # cancelled meanwhile: it ends now
        if record is None or sweep is None or sweep.status in FINISHED:
            return None
    run = (
        TrackedRun(settings, sweep_id, {}, run_id=record["mlflow"]["run_id"], guard=keeper.check)
        if record.get("mlflow")
        else None
    )
    # The parent's files are drawn while the best model is registered (CPU beside the requests).
    drawing = ThreadPoolExecutor(1, thread_name_prefix="parent-files")
    files = drawing.submit(_parent_files, sweep, record) if run is not None else None
    drawing.shutdown(wait=False)
    logged = {b["trial"]: b for g in range(len(sweep.groups)) if (b := record.get(f"group_best_{g}"))}
    # The best trial with a logged model: its group logged its best one's before ending its trials.
    best = (
        None
        if sweep.cancel_requested
        else next((logged[r.trial] for r in sweep.leaderboard if r.trial in logged), None)
    )
    model = None
    if best is not None:
        model = _publish_best(sweeps, settings, sweep_id, run, fence, keeper, best, record.get("best"))
    status = "succeeded" if best else ("cancelled" if sweep.cancel_requested else "failed")
    if run is not None and files is not None:
        _log_parent(run, sweep, files.result())
        run.end(RUN_STATUS[status])
    error = None if best or status == "cancelled" else "no trial succeeded"
    step = Step(fence).sweep_end(
        sweeps.key(sweep_id),
        sweep_id,
        encode(
            {
                "status": status,
                "error": error,
                "finished_at": now(),
                "best": {"trial": best["trial"], "job_id": best["job_id"], "model": model} if best else None,
            }
        ),
    )
    if best is not None and model is not None:
        step.hset(sweeps.jobs.key(best["job_id"]), encode({"model": model}))
    keeper.check()
    moved = sweeps.jobs.fenced.run(step, release=True)[0]
    log.info("sweep %s %s", sweep_id, status if moved else f"already ended (would be {status})")
    return status


def _publish_best(
    sweeps: SweepStore,
    settings: WorkerSettings,
    sweep_id: str,
    run: TrackedRun | None,
    fence: Fence,
    keeper: LeaseKeeper,
    best: dict,
    before: dict | None,
) -> dict:
    """Register the best trial's model (or take the version an earlier finisher recorded), record it, gate it."""
    from worker.tracking.publish import Candidate, publish
    from worker.tracking.registry import Registry, champion_lock

    client = run.client if run is not None else MlflowClient(settings.mlflow_tracking_uri)
    outage = (
        run.outage
        if run is not None
        else mlflow_outage(settings.mlflow_tracking_uri, settings.mlflow_retry_s, guard=keeper.check)
    )
    registry = Registry(
        client,
        outage,
        sweeps.redis,
        champion_lock(sweeps.prefix),
        settings.registered_model,
        settings.champion_alias,
        settings.champion_min_accuracy,
    )
    recorded = before["model"] if before and before.get("job_id") == best["job_id"] and before.get("model") else None

    def record(model: dict, prov: Provenance) -> None:
        keeper.check()
        sweeps.jobs.fenced.run(
            Step(fence)
            .hset(
                sweeps.key(sweep_id),
                encode({"best": {"trial": best["trial"], "job_id": best["job_id"], "model": model}}),
            )
            .hset(sweeps.jobs.key(best["job_id"]), encode({"model": model}))
            .set(provenance.key(sweeps.prefix, prov.name, prov.version), provenance.encoded(prov))
        )

    candidate = Candidate(best["job_id"], best["run_id"], best["logged"], best["echo_accuracy"], best["loss"])
    return publish(registry, candidate, record, recorded)


def _parent_files(sweep: Sweep, record: dict) -> dict[str, bytes]:
    """The parent run's leaderboard and figures."""
    rows = [r.model_dump() for r in sweep.leaderboard]
    columns = ["rank", "trial", "job_id", "echo_accuracy", "loss", "rung", "pruned"]
    table = "\n".join(
        [",".join([*columns, "values"])]
        + [",".join([*(str(r[c]) for c in columns), json.dumps(r["values"]).replace(",", ";")]) for r in rows]
    )
    curves = {int(t): c for g in range(len(sweep.groups)) for t, c in (record.get(f"curves_{g}") or {}).items()}
    files = {
        "leaderboard.json": json.dumps(rows, indent=1).encode(),
        "leaderboard.csv": table.encode() + b"\n",
        "loss_curves.png": _figure(curves, [r["trial"] for r in rows[:5]]),
    }
    if any(t.rungs for t in sweep.trials):
        from worker.attempt.rung_figure import rung_figure

        files["rungs.png"] = rung_figure(sweep.trials, [r["trial"] for r in rows[:5]])
    return files


def _log_parent(run: TrackedRun, sweep: Sweep, files: dict[str, bytes]) -> None:
    if board := sweep.leaderboard:
        run.add("best_eval_echo_accuracy", [board[0].echo_accuracy], 0)
        run.add("best_eval_loss", [board[0].loss], 0)
    run.add("trials_succeeded", [sweep.progress.succeeded], 0)
    run.tag_later({"finished_at": now()})  # with the points, in one request
    run.send_now()
    run.log_artifacts(files)


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


def _record(sweeps: SweepStore, sweep_id: str) -> dict[str, Any]:
    """The stored fields of a sweep that a group runs for (a sweep's record outlives its groups)."""
    record = sweeps.raw(sweep_id)
    if record is None:
        raise LookupError(f"no sweep {sweep_id}")
    return record
