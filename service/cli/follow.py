"""A live progress bar of one job, fed by polling GET /jobs/{id} until the job ends."""

import signal
import threading
import time
from concurrent import futures
from types import FrameType
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from contract.job import FINISHED
from service.cli.api import CANCELLED, FAILED, INTERRUPTED, Api
from service.cli.output import champion_line, err, error_line, evaluation_line, num, out

POLL_S = 0.5
TICK_S = 0.05  # how soon Ctrl-C is noticed
SAVING_SHARE = 0.1  # of the bar: a job's model is saved, registered and evaluated after its last step


# A KeyboardInterrupt raised between two bytecodes can leave a lock held (urllib3's pool queue, taken in
# Condition.__enter__, is one): the next use of it, in the same thread, then hangs for good.
class CtrlC:
    """While entered, Ctrl-C only sets `pressed`: no KeyboardInterrupt lands inside a library's lock."""

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None

    def _press(self, signum: int, frame: FrameType | None) -> None:
        # A flag, never a lock (not even an Event's): the main thread may hold that lock when this runs.
        self.pressed = True

    def __enter__(self) -> "CtrlC":
        self._previous = signal.signal(signal.SIGINT, self._press)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def nap(self, seconds: float) -> bool:
        """Sleep until Ctrl-C or the time is up; whether Ctrl-C was pressed."""
        end = time.monotonic() + seconds
        while not self.pressed and time.monotonic() < end:
            time.sleep(TICK_S)  # short naps: a signal whose handler returns does not cut a sleep short
        return self.pressed

    def result(self, answer: futures.Future) -> Any:
        """The answer once it has come; None if Ctrl-C comes first."""
        while not (self.pressed or answer.done()):
            futures.wait([answer], TICK_S)
        return None if self.pressed else answer.result()


def ask_in_background(api: Api, path: str) -> futures.Future:
    """GET path on a daemon thread, so that Ctrl-C need not wait for the answer (up to the timeout)."""
    answer: futures.Future = futures.Future()

    def call() -> None:
        try:
            answer.set_result(api.call("GET", path))
        except Exception as exc:  # noqa: BLE001 (raised again by answer.result(), in the main thread)
            answer.set_exception(exc)

    threading.Thread(target=call, daemon=True).start()
    return answer


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.fields[status]:<9}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        TextColumn("step {task.fields[step]}/{task.fields[steps]}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    )


def _fields(job: dict) -> dict:
    p, m = job["progress"], job.get("metrics") or {}
    # A running job shows what it is doing: starting (MLflow run, compiling), training, saving its model.
    status = (job.get("phase") or job["status"]) if job["status"] == "running" else job["status"]
    return {
        "status": status,
        "epoch": p["epoch"],
        "epochs": p["epochs"],
        "loss": num(m.get("loss")),
        "step": p["step"],
        "steps": p["steps"],
    }


def _total(job: dict) -> float:
    """The bar's length: the training steps, and a share after them for saving and registering the model."""
    return job["progress"]["steps"] / (1 - SAVING_SHARE)


def _done(job: dict) -> float:
    """How much of the bar the job has done: full only once it has ended."""
    return _total(job) if job["status"] in FINISHED else job["progress"]["step"]


def _watch(api: Api, job: dict, ctrl_c: CtrlC) -> dict:
    """Poll the job, updating the bar, until it has finished or Ctrl-C is pressed; the last job seen."""
    with _bar() as bar:
        task = bar.add_task("train", total=_total(job), **_fields(job))
        bar.update(task, completed=_done(job))  # a float: add_task's signature takes only an int
        status = (job["status"], job.get("phase"))
        while job["status"] not in FINISHED and not ctrl_c.nap(POLL_S):
            answer = ctrl_c.result(ask_in_background(api, f"/jobs/{job['id']}"))
            if answer is None:
                break
            job = answer
            if (job["status"], job.get("phase")) != status:
                status = (job["status"], job.get("phase"))
                phase = f" ({job['phase']})" if job.get("phase") else ""
                bar.console.print(
                    f"job {job['id']}: {job['status']}{phase}" + (f" on {job['device']}" if job.get("device") else "")
                )
            bar.update(task, completed=_done(job), **_fields(job))
    return job


def follow(api: Api, job: dict) -> None:
    """Show the job's progress until it ends; report the model and run, or exit non-zero."""
    with CtrlC() as ctrl_c:
        job = _watch(api, job, ctrl_c)
        if ctrl_c.pressed:
            hint = f"echo-rnn --api {api.base} cancel {job['id']}"
            err.print(f"stopped following; job {job['id']} keeps running. To cancel it: {hint}", markup=False)
            raise typer.Exit(INTERRUPTED)
    run = (job.get("mlflow") or {}).get("url", "-")
    if job["status"] == "succeeded":
        out.print(f"succeeded   job {job['id']} on {job.get('device') or '-'}", markup=False)
        out.print(f"model       {(job.get('model') or {}).get('uri', '-')}", markup=False)
        out.print(f"evaluation  {evaluation_line(job)}", markup=False)
        out.print(f"champion    {champion_line(job)}", markup=False)
        out.print(f"mlflow run  {run}", markup=False)
        return
    if job["status"] == "failed":
        err.print(error_line(f"job {job['id']} failed: {job.get('error') or 'no reason given'}"))
        err.print(f"  mlflow run: {run}", markup=False)
        raise typer.Exit(FAILED)
    err.print(f"job {job['id']} was cancelled (mlflow run: {run})", markup=False)
    raise typer.Exit(CANCELLED)
