"""Metric points sent to an MLflow run from a thread of their own, so training never waits on the server."""

import threading
from collections import deque

import numpy as np
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from numpy.typing import ArrayLike

from contract.fence import LeaseLost
from worker.retry import Outage, Unreachable
from worker.tracking.mlflow_retry import MlflowUnavailable

MAX_METRICS_PER_BATCH = 1000  # the tracking server's limit per log_batch


class MetricSender:
    """Sends queued metrics from a thread, so training never waits on the tracking server.

    Points wait as compact arrays, in the order they were queued (so the run holds a prefix of
    each metric's steps), and become Metric objects a batch at a time. A batch is retried as
    it is, timestamps included: the server keeps a point it already has only once.
    """

    def __init__(self, client: MlflowClient, run_id: str, interval_s: float, outage: Outage):
        self.client, self.run_id, self.interval_s, self.outage = client, run_id, interval_s, outage
        self._chunks: deque[list] = deque()  # [key, timestamp, first step, values, stride]
        self._count = 0
        self._sending = False
        self._flushing = False
        self._cond = threading.Condition()
        self._stopped = False
        self.error: str | None = None
        self.fenced: str | None = None  # the attempt lost its lease: nothing more is sent
        self._thread = threading.Thread(target=self._run, name=f"mlflow-{run_id[:8]}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Points queued and not yet sent."""
        with self._cond:
            return self._count

    def put(self, key: str, values: ArrayLike, first_step: int, timestamp: int, stride: int = 1) -> None:
        """Queue one point per value at steps first_step, first_step + stride, …; raises once the sender has given up."""
        self.check()
        values = np.array(values, dtype=np.float64).ravel()
        if not len(values):
            return
        with self._cond:
            self._chunks.append([key, timestamp, first_step, values, stride])
            self._count += len(values)
            if self._count >= MAX_METRICS_PER_BATCH:
                self._cond.notify_all()

    def check(self) -> None:
        """Raise if MLflow stayed unreachable past the retry limit, or the attempt lost its lease."""
        if self.fenced:
            raise LeaseLost(self.fenced)
        if self.error:
            raise MlflowUnavailable(self.error)

    def drain(self) -> None:
        """Block until everything queued has been sent (or the sender gave up, or was stopped)."""
        with self._cond:
            self._flushing = True
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: (not self._count and not self._sending) or self.error or self.fenced or self._stopped
            )
            self._flushing = False
            unsent = self._count
        self.check()
        if unsent:
            raise MlflowUnavailable(f"the sender was stopped with {unsent} metric points unsent")

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
            key, stamp, first, values, stride = chunk
            n = min(len(values), MAX_METRICS_PER_BATCH - len(batch))
            batch.extend(Metric(key, float(v), stamp, first + i * stride) for i, v in enumerate(values[:n]))
            if n == len(values):
                self._chunks.popleft()
            else:
                chunk[2], chunk[3] = first + n * stride, values[n:]
        self._count -= len(batch)
        return batch

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: (
                        self._stopped or self._count >= MAX_METRICS_PER_BATCH or (self._flushing and self._count > 0)
                    ),
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
            self.outage.call(
                lambda: self.client.log_batch(self.run_id, metrics=batch), f"sending {len(batch)} metric points"
            )
            return True
        except LeaseLost as exc:  # another worker carries the run on: not a point more from here
            with self._cond:
                self.fenced = str(exc)
                self._sending = False
                self._cond.notify_all()
            return False
        except Exception as exc:  # noqa: BLE001 (gave up, or the server refused them: the job cannot log its run)
            with self._cond:
                self.error = (str(exc) if isinstance(exc, Unreachable) else f"MLflow did not accept metrics: {exc}")[
                    :500
                ]
                self._sending = False
                self._cond.notify_all()
            return False
