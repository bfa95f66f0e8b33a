"""One job's MLflow run, written through a client bound to the run's id (never the active run)."""

import io
import tempfile
import time
from pathlib import Path

import numpy as np
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from worker.settings import WorkerSettings

MAX_METRICS_PER_BATCH = 1000  # the tracking server's limit per log_batch


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
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()
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

    def add(self, key: str, values: np.ndarray, first_step: int) -> None:
        """Queue one metric point per value, at steps first_step, first_step + 1, …"""
        stamp = int(time.time() * 1000)
        self._pending.extend(
            Metric(key, float(v), stamp, first_step + i) for i, v in enumerate(values)
        )

    def flush(self, force: bool = False) -> None:
        """Send what is buffered, if forced or it is time to."""
        if not force and time.monotonic() - self._last_flush < self.settings.log_flush_s:
            return
        while self._pending:
            batch, self._pending = self._pending[:MAX_METRICS_PER_BATCH], self._pending[MAX_METRICS_PER_BATCH:]
            self.client.log_batch(self.run_id, metrics=batch)
        self._last_flush = time.monotonic()

    def log_artifacts(self, files: dict[str, bytes]) -> None:
        """Upload small files as run artifacts."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                (Path(tmp) / name).write_bytes(content)
            self.client.log_artifacts(self.run_id, tmp)

    def end(self, status: str) -> None:
        """Flush and close the run with FINISHED, FAILED or KILLED."""
        try:
            self.flush(force=True)
        finally:
            self.client.set_terminated(self.run_id, status=RunStatus.to_string(getattr(RunStatus, status)))


def loss_history_csv(losses: np.ndarray) -> bytes:
    """The per-step losses as CSV."""
    buffer = io.StringIO()
    buffer.write("step,loss\n")
    for i, value in enumerate(losses):
        buffer.write(f"{i},{value:.6g}\n")
    return buffer.getvalue().encode()
