"""One job's MLflow run, written through a client bound to the run's id (never the active run)."""

import io
import logging
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
MAX_METRICS_PER_BATCH = 1000  # the tracking server's limit per log_batch


class MlflowUnavailable(RuntimeError):
    """MLflow did not take the job's data within the retry limit."""


class MetricSender:
    """Sends queued metrics from a thread, so training never waits on the tracking server."""

    def __init__(self, client: MlflowClient, run_id: str, interval_s: float, retry_s: float):
        self.client, self.run_id, self.interval_s, self.retry_s = client, run_id, interval_s, retry_s
        self._pending: list[Metric] = []
        self._sending = False
        self._cond = threading.Condition()
        self._stopped = False
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"mlflow-{run_id[:8]}", daemon=True)
        self._thread.start()

    def put(self, metrics: list[Metric]) -> None:
        """Queue points; raises once the sender has given up."""
        self.check()
        with self._cond:
            self._pending.extend(metrics)
            if len(self._pending) >= MAX_METRICS_PER_BATCH:
                self._cond.notify_all()

    def check(self) -> None:
        """Raise if MLflow stayed unreachable past the retry limit."""
        if self.error:
            raise MlflowUnavailable(self.error)

    def drain(self) -> None:
        """Block until everything queued has been sent (or the sender gave up)."""
        with self._cond:
            self._cond.notify_all()
            self._cond.wait_for(lambda: (not self._pending and not self._sending) or self.error)
        self.check()

    def stop(self) -> None:
        """End the sending thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopped or len(self._pending) >= MAX_METRICS_PER_BATCH, self.interval_s)
                if self._stopped:
                    return
                batch, self._pending = self._pending[:MAX_METRICS_PER_BATCH], self._pending[MAX_METRICS_PER_BATCH:]
                self._sending = bool(batch)
            if batch and not self._send(batch):
                return
            with self._cond:
                self._sending = False
                self._cond.notify_all()

    def _send(self, batch: list[Metric]) -> bool:
        """Send one batch, retrying with backoff up to the retry limit."""
        deadline, delay = time.monotonic() + self.retry_s, 0.5
        while True:
            try:
                self.client.log_batch(self.run_id, metrics=batch)
                return True
            except Exception as exc:  # the server is down or overloaded: keep the batch and retry
                if time.monotonic() + delay > deadline:
                    with self._cond:
                        self.error = f"MLflow did not accept metrics for {self.retry_s:.0f} s: {exc}"[:500]
                        self._sending = False
                        self._cond.notify_all()
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 10)


class RunLogger:
    """Buffers metrics and writes them in batches to one MLflow run."""

    def __init__(self, settings: WorkerSettings, job_id: str, params: dict):
        self.settings = settings
        self.client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        self.experiment_id = self._experiment()
        run = self.client.create_run(
            self.experiment_id,
            tags={"job_id": job_id, "mlflow.runName": f"job-{job_id[:8]}"},
            run_name=f"job-{job_id[:8]}",
        )
        self.run_id = run.info.run_id
        self._figures = ThreadPoolExecutor(1, thread_name_prefix="figures")
        self._figure_jobs: list[Future] = []
        self.sender = MetricSender(self.client, self.run_id, settings.log_flush_s, settings.mlflow_retry_s)
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

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
        except MlflowException:  # another worker created it first
            return self.client.get_experiment_by_name(name).experiment_id

    def add(self, key: str, values, first_step: int) -> None:
        """Queue one metric point per value, at steps first_step, first_step + 1, …"""
        stamp = int(time.time() * 1000)
        self.sender.put([Metric(key, float(v), stamp, first_step + i) for i, v in enumerate(values)])

    def add_figure(self, losses: np.ndarray, window: tuple, step: int) -> None:
        """Draw the tutorial's figure and log it as the image echo_figure at this training step, off the training thread."""
        self._figure_jobs.append(self._figures.submit(self._log_figure, losses, window, step))

    def _log_figure(self, losses: np.ndarray, window: tuple, step: int) -> None:
        from PIL import Image

        from worker.engine.figure import render

        try:
            image = Image.open(io.BytesIO(render(losses, *window)))
            self.client.log_image(self.run_id, image, key="echo_figure", step=step)
        except Exception:  # a lost snapshot must not fail the job; the final figure is logged apart
            log.warning("could not log the figure of step %d", step, exc_info=True)

    def flush(self) -> None:
        """Wait until every queued point and figure is on the server; raises if the sender gave up."""
        wait(self._figure_jobs)
        self._figure_jobs.clear()
        self.sender.drain()

    def log_artifacts(self, files: dict[str, bytes]) -> None:
        """Upload small files as run artifacts."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                (Path(tmp) / name).write_bytes(content)
            self.client.log_artifacts(self.run_id, tmp)

    def end(self, status: str) -> None:
        """Flush and close the run with FINISHED, FAILED or KILLED."""
        try:
            self.flush()
        finally:
            self.sender.stop()
            self._figures.shutdown(wait=False, cancel_futures=True)
            self.client.set_terminated(self.run_id, status=RunStatus.to_string(getattr(RunStatus, status)))


def loss_history_csv(losses: np.ndarray) -> bytes:
    """The per-step losses as CSV."""
    buffer = io.StringIO()
    buffer.write("step,loss\n")
    for i, value in enumerate(losses):
        buffer.write(f"{i},{value:.6g}\n")
    return buffer.getvalue().encode()
