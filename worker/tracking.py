"""One job's MLflow run, written through a client bound to the run's id (never the active run).

Training never waits on the tracking server: metric points queue in memory and a thread sends
them in batches; figures are drawn and logged by another thread. Every call to the server goes
through the run's Outage: while MLflow is unreachable it is retried with backoff, and once MLflow
has been down for settings.mlflow_retry_s the job fails with MlflowUnavailable.
"""

import io
import logging
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import urllib3
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from worker.retry import Outage, Unreachable
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
MAX_METRICS_PER_BATCH = 1000  # the tracking server's limit per log_batch


class MlflowUnavailable(Unreachable):
    """MLflow did not take the job's data within the retry limit."""


def transient(exc: BaseException) -> bool:
    """Whether an MLflow call failed because the server is down or overloaded (worth retrying)."""
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()  # 500 for connection errors and exhausted HTTP retries
        return not 400 <= status < 500 or status in (408, 429)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        return status >= 500 or status in (408, 429)
    return isinstance(exc, (OSError, requests.RequestException, urllib3.exceptions.HTTPError))


def mlflow_outage(tracking_uri: str, limit_s: float) -> Outage:
    """Retrying calls to one MLflow server for at most limit_s of unavailability."""
    return Outage(f"MLflow at {tracking_uri}", limit_s, transient, MlflowUnavailable)


class MetricSender:
    """Sends queued metrics from a thread, so training never waits on the tracking server.

    Points wait as compact arrays, in the order they were queued (so the run holds a prefix of
    each metric's steps), and become Metric objects a batch at a time. A batch is retried as
    it is, timestamps included: the server keeps a point it already has only once.
    """

    def __init__(self, client: MlflowClient, run_id: str, interval_s: float, outage: Outage):
        self.client, self.run_id, self.interval_s, self.outage = client, run_id, interval_s, outage
        self._chunks: deque[list] = deque()  # [key, timestamp, first step, values]
        self._count = 0
        self._sending = False
        self._flushing = False
        self._cond = threading.Condition()
        self._stopped = False
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"mlflow-{run_id[:8]}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Points queued and not yet sent."""
        with self._cond:
            return self._count

    def put(self, key: str, values, first_step: int, timestamp: int) -> None:
        """Queue one point per value at steps first_step, first_step + 1, …; raises once the sender has given up."""
        self.check()
        values = np.array(values, dtype=np.float64).ravel()
        if not len(values):
            return
        with self._cond:
            self._chunks.append([key, timestamp, first_step, values])
            self._count += len(values)
            if self._count >= MAX_METRICS_PER_BATCH:
                self._cond.notify_all()

    def check(self) -> None:
        """Raise if MLflow stayed unreachable past the retry limit."""
        if self.error:
            raise MlflowUnavailable(self.error)

    def drain(self) -> None:
        """Block until everything queued has been sent (or the sender gave up)."""
        with self._cond:
            self._flushing = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: (not self._count and not self._sending) or self.error)
            self._flushing = False
        self.check()

    def stop(self) -> None:
        """End the sending thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _take(self) -> list[Metric]:
        """Up to one batch of the oldest points (called holding the lock)."""
        batch: list[Metric] = []
        while self._chunks and len(batch) < MAX_METRICS_PER_BATCH:
            chunk = self._chunks[0]
            key, stamp, first, values = chunk
            n = min(len(values), MAX_METRICS_PER_BATCH - len(batch))
            batch.extend(Metric(key, float(v), stamp, first + i) for i, v in enumerate(values[:n]))
            if n == len(values):
                self._chunks.popleft()
            else:
                chunk[2], chunk[3] = first + n, values[n:]
        self._count -= len(batch)
        return batch

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopped or self._count >= MAX_METRICS_PER_BATCH or (self._flushing and self._count > 0),
                    self.interval_s,
                )
                if self._stopped:
                    return
                batch = self._take()
                self._sending = bool(batch)
            if batch and not self._send(batch):
                return
            with self._cond:
                self._sending = False
                self._cond.notify_all()

    def _send(self, batch: list[Metric]) -> bool:
        """Send one batch, retrying while MLflow is down within the limit."""
        try:
            self.outage.call(lambda: self.client.log_batch(self.run_id, metrics=batch), f"sending {len(batch)} metric points")
            return True
        except Exception as exc:  # gave up (or the server refused them): the job cannot log its run
            with self._cond:
                self.error = (str(exc) if isinstance(exc, Unreachable) else f"MLflow did not accept metrics: {exc}")[:500]
                self._sending = False
                self._cond.notify_all()
            return False


class RunLogger:
    """Buffers metrics and writes them in batches to one MLflow run."""

    def __init__(self, settings: WorkerSettings, job_id: str, params: dict, run_id: str | None = None):
        """Open the job's run: a new one, or (resuming a job) the run it already has."""
        self.settings = settings
        self.client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        self.outage = mlflow_outage(settings.mlflow_tracking_uri, settings.mlflow_retry_s)
        if run_id is None:
            self.experiment_id = self.outage.call(self._experiment, "finding the experiment")
            run = self._create_run(job_id)
        else:
            run = self.outage.call(lambda: self.client.get_run(run_id), "reopening the job's run")
            self.experiment_id = run.info.experiment_id
        self.run_id = run.info.run_id
        self._figures = ThreadPoolExecutor(1, thread_name_prefix="figures")
        self._figure_jobs: list[Future] = []
        self._figure_error: str | None = None
        self.sender = MetricSender(self.client, self.run_id, settings.log_flush_s, self.outage)
        if run_id is None:
            logged = [Param(k, str(v)) for k, v in params.items()]
            self.outage.call(lambda: self.client.log_batch(self.run_id, params=logged), "logging the parameters")

    def _create_run(self, job_id: str):
        """A new run for the job; a retry after a lost answer finds the run the lost call created."""
        attempt, tried = uuid.uuid4().hex, []

        def create():
            if tried:
                found = self.client.search_runs([self.experiment_id], f"tags.attempt = '{attempt}'", max_results=1)
                if found:
                    return found[0]
            tried.append(True)
            return self.client.create_run(
                self.experiment_id,
                tags={"job_id": job_id, "attempt": attempt, "mlflow.runName": f"job-{job_id[:8]}"},
                run_name=f"job-{job_id[:8]}",
            )

        return self.outage.call(create, "creating the job's run")

    def logged_count(self, key: str) -> int:
        """How many steps of a metric the run holds (points are sent in step order, so a prefix)."""
        history = self.outage.call(lambda: self.client.get_metric_history(self.run_id, key), f"reading the {key} history")
        return len({m.step for m in history})

    @property
    def url(self) -> str:
        """The run's page in the MLflow UI."""
        return f"{self.settings.ui_url}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def _experiment(self) -> str:
        name = self.settings.mlflow_experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException as exc:  # another worker created it first
            if transient(exc):
                raise
            return self.client.get_experiment_by_name(name).experiment_id

    def check(self) -> None:
        """Raise if MLflow stayed unreachable past the retry limit."""
        if self._figure_error:
            raise MlflowUnavailable(self._figure_error)
        self.sender.check()

    def add(self, key: str, values, first_step: int) -> None:
        """Queue one metric point per value, at steps first_step, first_step + 1, …"""
        if self._figure_error:
            raise MlflowUnavailable(self._figure_error)
        self.sender.put(key, values, first_step, int(time.time() * 1000))

    def add_figure(self, losses: np.ndarray, window: tuple, step: int) -> None:
        """Draw the tutorial's figure and log it as the image echo_figure at this training step, off the training thread."""
        self._figure_jobs.append(self._figures.submit(self._log_figure, losses, window, step))

    def _log_figure(self, losses: np.ndarray, window: tuple, step: int) -> None:
        from PIL import Image

        from worker.engine.figure import render

        if self.outage.given_up:  # the job is failing for want of MLflow: no snapshot to wait for
            return
        try:
            image = Image.open(io.BytesIO(render(losses, *window)))
            self.outage.call(
                lambda: self.client.log_image(self.run_id, image, key="echo_figure", step=step),
                f"logging the figure of step {step}",
            )
        except MlflowUnavailable as exc:  # MLflow is gone for good: the job fails at its next report
            self._figure_error = str(exc)
        except Exception:  # a lost snapshot must not fail the job; the final figure is logged apart
            log.warning("could not log the figure of step %d", step, exc_info=True)

    def flush(self) -> None:
        """Wait until every queued point and figure is on the server; raises if MLflow stayed unreachable."""
        self.check()  # given up already: nothing queued will get through
        jobs, self._figure_jobs = self._figure_jobs, []
        for job in jobs:
            job.result()  # snapshots swallow their own errors; the final artifacts' errors count
        self.check()
        self.sender.drain()

    def log_artifacts_later(self, make_files: Callable[[], dict[str, bytes]]) -> None:
        """Make and upload files off this thread (beside the model's logging); flush and end wait for it."""
        self._figure_jobs.append(self._figures.submit(lambda: self.log_artifacts(make_files())))

    def log_artifacts(self, files: dict[str, bytes]) -> None:
        """Upload small files as run artifacts."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                (Path(tmp) / name).write_bytes(content)
            self.outage.call(lambda: self.client.log_artifacts(self.run_id, tmp), "uploading the run's artifacts")

    def end(self, status: str) -> None:
        """Flush and close the run with FINISHED, FAILED or KILLED.

        Once MLflow has been down past the limit, closing gets a single try, not a new wait.
        """
        try:
            self.flush()
        finally:
            self.sender.stop()
            self._figures.shutdown(wait=False, cancel_futures=True)
            final = RunStatus.to_string(getattr(RunStatus, status))
            self.outage.call(lambda: self.client.set_terminated(self.run_id, status=final), "closing the run")


def loss_history_csv(losses: np.ndarray) -> bytes:
    """The per-step losses as CSV."""
    buffer = io.StringIO()
    buffer.write("step,loss\n")
    for i, value in enumerate(losses):
        buffer.write(f"{i},{value:.6g}\n")
    return buffer.getvalue().encode()
