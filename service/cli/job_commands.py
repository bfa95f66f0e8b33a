"""echo-rnn jobs, show and cancel."""

from typing import Annotated

import typer
from rich.table import Table

from service.cli.api import Api, handled
from service.cli.output import champion_line, dump, err, evaluation_line, num, out, percent, when

Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON as it is.")]
JobId = Annotated[str, typer.Argument(help="The job's id (echo-rnn jobs lists them).", show_default=False)]


@handled
def jobs(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="Only jobs in this status: queued, running, succeeded, failed, cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Jobs per page (1-100).")] = 20,
    cursor: Annotated[
        int | None, typer.Option(help="Where the page starts: the cursor the previous page printed.")
    ] = None,
    json: Json = False,
) -> None:
    """List jobs, newest first, as a table."""
    api: Api = ctx.obj
    query = {k: v for k, v in {"status": status, "limit": limit, "cursor": cursor}.items() if v is not None}
    page = api.call("GET", "/jobs", params=query)
    if json:
        return dump(page)
    table = Table("id", "status", "progress", "epoch", "loss", "created (UTC)", "model", box=None)
    for job in page["jobs"]:
        p, m = job["progress"], job.get("metrics") or {}
        model = (job.get("model") or {}).get("uri", "-")
        table.add_row(
            job["id"],
            job["status"],
            percent(job),
            f"{p['epoch']}/{p['epochs']}",
            num(m.get("loss")),
            when(job["created_at"]),
            model,
        )
    out.print(table if page["jobs"] else "no jobs")
    if page.get("next_cursor") is not None:
        more = f"echo-rnn jobs --cursor {page['next_cursor']} --limit {limit}" + (
            f" --status {status}" if status else ""
        )
        err.print(f"more: {more}", markup=False)


@handled
def show(ctx: typer.Context, job_id: JobId, json: Json = False) -> None:
    """Show one job: status, progress, metrics, parameters, model and MLflow run."""
    api: Api = ctx.obj
    job = api.call("GET", f"/jobs/{job_id}")
    if json:
        return dump(job)
    p, m = job["progress"], job.get("metrics") or {}
    status = job["status"] + (
        " (cancel requested)" if job.get("cancel_requested") and job["status"] == "running" else ""
    )
    rows = {
        "job": job["id"],
        "status": status,
        "device": job.get("device") or "-",
        "created": when(job["created_at"]),
        "started": when(job.get("started_at")),
        "finished": when(job.get("finished_at")),
        "progress": f"{percent(job)}  epoch {p['epoch']}/{p['epochs']}  step {p['step']}/{p['steps']}",
        "metrics": f"loss {num(m.get('loss'))}  epoch_loss {num(m.get('epoch_loss'))}  "
        f"echo_accuracy {num(m.get('echo_accuracy'))}",
        "params": "  ".join(f"{k}={v}" for k, v in job["params"].items()),
        "model": (job.get("model") or {}).get("uri", "-"),
        "evaluation": evaluation_line(job),
        "champion": champion_line(job),
        "mlflow run": (job.get("mlflow") or {}).get("url", "-"),
    }
    if job.get("stopped_early"):
        rows["progress"] += f"  (stopped early at epoch {job['stopped_early']}: target_loss reached)"
    if job.get("error"):
        rows["error"] = job["error"]
    for key, value in rows.items():
        out.print(f"{key:<11} {value}", markup=False)


@handled
def cancel(ctx: typer.Context, job_id: JobId) -> None:
    """Cancel a job: a queued one never runs, a running one stops at its next check."""
    api: Api = ctx.obj
    job = api.call("DELETE", f"/jobs/{job_id}")
    if job["status"] == "running":
        out.print(f"job {job_id}: cancel requested; it stops at its next check (echo-rnn show {job_id})", markup=False)
    else:
        out.print(f"job {job_id}: {job['status']}", markup=False)
