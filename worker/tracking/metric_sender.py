"""Metric points (and parameters and tags) sent to an MLflow run from a thread of their own, so training never
waits on the server."""

import threading
from collections import deque

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from numpy.typing import ArrayLike

from contract.fence import LeaseLost
from worker.retry import Outage, Unreachable
from worker.tracking.mlflow_retry import MlflowUnavailable

MAX_METRICS_PER_BATCH = 1000  # the tracking server's limits per log_batch: of all entities together too
MAX_PARAMS_TAGS_PER_BATCH = 100  # of each


class MetricSender:
    """Sends queued metrics from a thread, so training never waits on the tracking server.

    Points wait as compact arrays, in the order they were queued (so the run holds a prefix of
    each metric's steps), and become Metric objects a batch at a time. Parameters and tags queued
    go in the next batch, beside its points: one request a run where there would be three. A batch
    is retried as it is, timestamps included: the server keeps a point it already has only once
    (and a parameter logged again with the same value).
    """

    def __init__(self, client: MlflowClient, run_id: str, interval_s: float, outage: Outage):
        self.client, self.run_id, self.interval_s, self.outage = client, run_id, interval_s, outage
        self._chunks: deque[list] = deque()  # [key, timestamp, first step, values, stride]
        self._count = 0
        self._params: dict[str, str] = {}
        self._tags: dict[str, str] = {}
        self._sending = False
        self._flushing = False
        self._hurry = False  # send what is queued at once, not at the next interval
        self._cond = threading.Condition()
        self._stopped = False
        self.error: str | None = None
        self.fenced: str | None = None  # the attempt lost its lease: nothing more is sent
        self._thread = threading.Thread(target=self._run, name=f"mlflow-{run_id[:8]}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Points, parameters and tags queued and not yet sent."""
        with self._cond:
            return self._queued

    @property
    def _queued(self) -> int:
        return self._count + len(self._params) + len(self._tags)

    def put(self, key: str, values: ArrayLike, first_step: int, timestamp: int, stride: int = 1) -> None:
        """Queue one point per value at steps first_step, first_step + stride, …; raises once the sender has given up."""
        self.check()
        values = np.array(values, dtype=np.float64).ravel()
        if not len(values):
            return
        with self._cond:
            self._chunks.append([key, timestamp, first_step, values, stride])
            self._count += len(values)
            if self._count >= MAX_METRICS_PER_BATCH or self._hurry:
                self._cond.notify_all()

    def put_params(self, params: dict[str, str]) -> None:
        """Queue parameters for the next batch."""
        self.check()
        with self._cond:
            self._params.update(params)
            self._cond.notify_all()  # sent at once if the sender is in a hurry, else at the interval

    def put_tags(self, tags: dict[str, str]) -> None:
        """Queue tags for the next batch (a tag set again takes the later value)."""
        self.check()
        with self._cond:
            self._tags.update(tags)
            self._cond.notify_all()

    def send_now(self) -> None:
        """From now on, send what is queued at once rather than at the next interval (the training has ended)."""
        with self._cond:
            self._hurry = True
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
                lambda: (not self._queued and not self._sending) or self.error or self.fenced or self._stopped
            )
            self._flushing = False
            unsent, others = self._count, len(self._params) + len(self._tags)
        self.check()
        if unsent or others:
            also = f" (and {others} parameters or tags)" if others else ""
            raise MlflowUnavailable(f"the sender was stopped with {unsent} metric points unsent{also}")

    def stop(self) -> None:
        """End the sending thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _take(self) -> tuple[list[Metric], list[Param], list[RunTag]]:
        """Up to one batch of the oldest points, parameters and tags (called holding the lock)."""
        params = [Param(k, self._params.pop(k)) for k in list(self._params)[:MAX_PARAMS_TAGS_PER_BATCH]]
        tags = [RunTag(k, self._tags.pop(k)) for k in list(self._tags)[:MAX_PARAMS_TAGS_PER_BATCH]]
        most = MAX_METRICS_PER_BATCH - len(params) - len(tags)
        batch: list[Metric] = []
        while self._chunks and len(batch) < most:
            chunk = self._chunks[0]
            key, stamp, first, values, stride = chunk
            n = min(len(values), most - len(batch))
            batch.extend(Metric(key, float(v), stamp, first + i * stride) for i, v in enumerate(values[:n]))
            if n == len(values):
                self._chunks.popleft()
            else:
                chunk[2], chunk[3] = first + n * stride, values[n:]
        self._count -= len(batch)
        return batch, params, tags

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: (
                        self._stopped
                        or self._count >= MAX_METRICS_PER_BATCH
                        or ((self._flushing or self._hurry) and self._queued > 0)
                    ),
                    self.interval_s,
                )
                if self._stopped:
                    return
                batch, params, tags = self._take()
                self._sending = bool(batch or params or tags)
            if self._sending and not self._send(batch, params, tags):
                return
            with self._cond:
                self._sending = False
                self._cond.notify_all()

    def _send(self, batch: list[Metric], params: list[Param], tags: list[RunTag]) -> bool:
        """Send one batch, retrying while MLflow is down within the limit."""
        what = f"sending {len(batch)} metric points" + (f", {len(params)} parameters" if params else "")
        try:
            self.outage.call(
                lambda: self.client.log_batch(self.run_id, metrics=batch, params=params, tags=tags),
                what + (f", {len(tags)} tags" if tags else ""),
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
