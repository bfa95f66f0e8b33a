"""An MLflow run (a job's, a trial's or a sweep's parent), written through a client bound to the run's id.

Training never waits on the tracking server: metric points queue in a MetricSender and figures
are drawn and logged by a thread of their own. Every call to the server goes through the run's
Outage: while MLflow is unreachable it is retried with backoff, and once MLflow has been down
for settings.mlflow_retry_s the job fails with MlflowUnavailable.
"""

import gzip
import io
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from mlflow.entities import Param, Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_IMAGES
from numpy.typing import ArrayLike

from contract.fence import LeaseLost
from contract.mlflow_names import JOB_ID_TAG
from worker.settings import WorkerSettings
from worker.tracking import artifacts
from worker.tracking.metric_sender import MetricSender
from worker.tracking.mlflow_retry import MlflowUnavailable, mlflow_outage, transient

log = logging.getLogger(__name__)
LOSS_HISTORY = "loss_history.csv.gz"  # every step's loss, a run's artifact
THUMBNAIL = 256  # mlflow.tracking.multimedia.COMPRESSED_IMAGE_SIZE


class TrackedRun:
    """Buffers metrics and writes them in batches to one MLflow run."""

    def __init__(
        self,
        settings: WorkerSettings,
        job_id: str,
        params: dict,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        gate: threading.Semaphore | None = None,
        guard: Callable[[], None] | None = None,
        experiment_id: str | None = None,
        params_later: bool = False,
    ):
        """Open the run: a new one (with tags, e.g. a sweep's mlflow.parentRunId), or (resuming) the run it already
        has. job_id: the job's id, or a sweep's for its parent run (whose job_id tag then holds the sweep's id). gate, shared by the runs of a sweep's group, bounds their calls to MLflow at once; guard, checked
        before every call, stops them all (the attempt lost its lease). experiment_id: where a new run goes (its
        parent's experiment), found by name when not given. params_later: a new run's parameters go with its first
        batch of points, within log_flush_s, rather than in a request of their own now."""
        self.settings = settings
        self.client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        self.outage = mlflow_outage(settings.mlflow_tracking_uri, settings.mlflow_retry_s, gate, guard)
        if run_id is None:
            self.experiment_id = experiment_id or self.outage.call(self._experiment, "finding the experiment")
            run = self._create_run(job_id, tags or {})
        else:
            run = self.outage.call(lambda: self.client.get_run(run_id), "reopening the job's run")
            self.experiment_id = run.info.experiment_id
        self.run_id, self.artifact_uri = run.info.run_id, run.info.artifact_uri
        self.ended: str | None = None  # the status the run was closed with, once it is
        self._figures = ThreadPoolExecutor(1, thread_name_prefix="figures")
        self._figure_jobs: list[Future] = []
        self._figure_error: str | None = None
        self._images_tagged = False
        self.sender = MetricSender(self.client, self.run_id, settings.log_flush_s, self.outage)
        values = {k: str(v) for k, v in params.items()}
        if run_id is None and not params_later:
            logged = [Param(k, v) for k, v in values.items()]
            self.outage.call(lambda: self.client.log_batch(self.run_id, params=logged), "logging the parameters")
        elif values and (run_id is None or not run.data.params):  # later, or lost with an attempt that sent none
            self.sender.put_params(values)

    def _create_run(self, job_id: str, tags: dict[str, str]) -> Run:
        """A new run for the job; a retry after a lost answer finds the run the lost call created."""
        attempt = uuid.uuid4().hex
        tried: list[bool] = []

        def create() -> Run:
            if tried:
                found = self.client.search_runs([self.experiment_id], f"tags.attempt = '{attempt}'", max_results=1)
                if found:
                    return found[0]
            tried.append(True)
            name = tags.get("mlflow.runName", f"job-{job_id[:8]}")
            return self.client.create_run(
                self.experiment_id,
                tags={JOB_ID_TAG: job_id, "attempt": attempt, "mlflow.runName": name, **tags},
                run_name=name,
            )

        return self.outage.call(create, "creating the job's run")

    def logged_count(self, key: str) -> int:
        """How many steps of a metric the run holds (points are sent in step order, so a prefix)."""
        history = self.outage.call(
            lambda: self.client.get_metric_history(self.run_id, key), f"reading the {key} history"
        )
        return len({m.step for m in history})

    def holds(self, path: str) -> bool:
        """Whether the run has an artifact at path (a top-level file)."""
        found = self.outage.call(lambda: self.client.list_artifacts(self.run_id), "listing the run's artifacts")
        return any(f.path == path for f in found)

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
            if transient(exc) or (created := self.client.get_experiment_by_name(name)) is None:
                raise
            return created.experiment_id

    def check(self) -> None:
        """Raise if MLflow stayed unreachable past the retry limit."""
        if self._figure_error:
            raise MlflowUnavailable(self._figure_error)
        self.sender.check()

    def add(self, key: str, values: ArrayLike, first_step: int, stride: int = 1) -> None:
        """Queue one metric point per value, at steps first_step, first_step + stride, …"""
        if self._figure_error:
            raise MlflowUnavailable(self._figure_error)
        self.sender.put(key, values, first_step, int(time.time() * 1000), stride)

    def add_figure(self, losses: np.ndarray, window: tuple, step: int) -> None:
        """Draw the tutorial's figure and log it as the image echo_figure at this training step, off the training thread."""
        self._figure_jobs.append(self._figures.submit(self._log_figure, losses, window, step))

    def _log_figure(self, losses: np.ndarray, window: tuple, step: int) -> None:
        from worker.engine.figure import render

        if self.outage.given_up:  # the job is failing for want of MLflow: no snapshot to wait for
            return
        try:
            files = image_files("echo_figure", step, render(losses, *window))
            self.outage.call(lambda: self._upload(files, "images"), f"logging the figure of step {step}")
            if not self._images_tagged:  # what MLflow's log_image sets, so the UI shows the image card
                self.outage.call(
                    lambda: self.client.set_tag(self.run_id, MLFLOW_LOGGED_IMAGES, "True"), "tagging the run's images"
                )
                self._images_tagged = True
        except MlflowUnavailable as exc:  # MLflow is gone for good: the job fails at its next report
            self._figure_error = str(exc)
        except LeaseLost:  # the attempt stops at its next fenced write
            return
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

    def send_now(self) -> None:
        """Send the points queued, and those to come, at once: the training has ended (end still waits for them)."""
        self.sender.send_now()

    def log_artifacts_later(self, make_files: Callable[[], dict[str, bytes]]) -> None:
        """Make and upload files off this thread (beside the model's logging); flush and end wait for it."""
        self._figure_jobs.append(self._figures.submit(lambda: self.log_artifacts(make_files())))

    def tag_later(self, tags: dict[str, str]) -> None:
        """Set tags with the next batch of points (flush and end wait for it)."""
        self.sender.put_tags(tags)

    def log_artifacts(self, files: dict[str, bytes]) -> None:
        """Upload small files as run artifacts (a few at once)."""
        self.outage.call(lambda: self._upload(files), "uploading the run's artifacts")

    def _upload(self, files: dict[str, bytes], under: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                (Path(tmp) / name).write_bytes(content)
            artifacts.upload(self.artifact_uri, self.settings.mlflow_tracking_uri, Path(tmp), under)

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
            self.ended = status

    def abandon(self) -> None:
        """Stop sending without closing the run: another worker carries the job on in it."""
        self.sender.stop()
        self._figures.shutdown(wait=False, cancel_futures=True)


def loss_history_csv(losses: np.ndarray) -> bytes:
    """Every step's loss as gzip-compressed CSV (the run's full history; MLflow's loss chart holds bucket means)."""
    lines = "".join(f"{i},{value:.6g}\n" for i, value in enumerate(np.asarray(losses, np.float32).tolist()))
    # Level 6: a quarter of level 9's time for 1 % more bytes (level 9 took half a second per 66,600 steps).
    return gzip.compress(("step,loss\n" + lines).encode(), compresslevel=6, mtime=0)


def image_files(key: str, step: int, png: bytes) -> dict[str, bytes]:
    """An image at a step as MLflow's log_image names it (the UI's image card finds it by these names).

    log_image would decode the PNG and encode it again (a third of a snapshot's time); this
    uploads it as drawn, beside the 256-pixel WebP preview the UI's grid shows.
    """
    from PIL import Image

    name = f"{key}+step+{step}+timestamp+{int(time.time() * 1000)}+{uuid.uuid4()}"
    image = Image.open(io.BytesIO(png))
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    preview = io.BytesIO()
    image.save(preview, format="webp")
    return {f"{name}.png": png, f"{name}+compressed.webp": preview.getvalue()}
