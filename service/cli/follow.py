"""A live progress bar of one job, fed by polling GET /jobs/{id} until the job ends."""

import time

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from service.cli.api import CANCELLED, FAILED, INTERRUPTED, Api
from service.cli.output import err, error_line, num, out

FINISHED = {"succeeded", "failed", "cancelled"}
POLL_S = 0.5


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.fields[status]:<9}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    )


def _fields(job: dict) -> dict:
    p, m = job["progress"], job.get("metrics") or {}
    return {"status": job["status"], "epoch": p["epoch"], "epochs": p["epochs"], "loss": num(m.get("loss"))}


def _watch(api: Api, job: dict) -> dict:
    """Poll the job, updating the bar, until it has finished; the finished job."""
    with _bar() as bar:
        task = bar.add_task("train", total=job["progress"]["steps"], **_fields(job))
        status = job["status"]
        while job["status"] not in FINISHED:
            time.sleep(POLL_S)
            job = api.call("GET", f"/jobs/{job['id']}")
            if job["status"] != status:
                status = job["status"]
                bar.console.print(f"job {job['id']}: {status}" + (f" on {job['device']}" if job.get("device") else ""))
            bar.update(task, completed=job["progress"]["step"], **_fields(job))
    return job


def follow(api: Api, job: dict) -> None:
    """Show the job's progress until it ends; report the model and run, or exit non-zero."""
    try:
        job = _watch(api, job)
    except KeyboardInterrupt:
        hint = f"echo-rnn --api {api.base} cancel {job['id']}"
        err.print(f"stopped following; job {job['id']} keeps running. To cancel it: {hint}", markup=False)
        raise typer.Exit(INTERRUPTED) from None
    run = (job.get("mlflow") or {}).get("url", "-")
    if job["status"] == "succeeded":
        out.print(f"succeeded   job {job['id']} on {job.get('device') or '-'}", markup=False)
        out.print(f"model       {(job.get('model') or {}).get('uri', '-')}", markup=False)
        out.print(f"mlflow run  {run}", markup=False)
        return
    if job["status"] == "failed":
        err.print(error_line(f"job {job['id']} failed: {job.get('error') or 'no reason given'}"))
        err.print(f"  mlflow run: {run}", markup=False)
        raise typer.Exit(FAILED)
    err.print(f"job {job['id']} was cancelled (mlflow run: {run})", markup=False)
    raise typer.Exit(CANCELLED)
