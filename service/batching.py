"""Requests that meet at a model become one call: leader/follower batching, as TensorFlow Serving does."""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

MIN_ROWS, MIN_LENGTH = 1, 16


def bucket(n: int, least: int) -> int:
    """The power of two at or above n (at least `least`): a few shapes, so XLA compiles a few times."""
    return max(least, 1 << (n - 1).bit_length())


@dataclass(eq=False)
class _Request:
    bits: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    result: np.ndarray | None = None
    error: BaseException | None = None


class Batcher:
    """Runs forward on [rows, length] bit arrays, merging the requests that wait while a call runs.

    No thread and no timer of its own: a request that finds the model idle runs at once. Requests
    that arrive while a call runs queue up; when it ends, the oldest of them runs one call for all
    queued by then (same length bucket, up to max_rows). Under load calls grow instead of queueing.
    """

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_rows: int, pad: bool = True):
        """pad: round a call's rows and length up to powers of two (a compiled forward pass sees a few shapes);
        without it, a call is as long as its longest request (the network is causal: right-padding is exact)."""
        self.forward, self.max_rows, self.pad = forward, max_rows, pad
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._busy = False
        self.calls = self.requests = 0

    def __call__(self, bits: np.ndarray) -> np.ndarray:
        """P(bit = 1) for each position of each row, as one forward call alone would give."""
        with self._lock:
            alone = not self._busy
            self._busy = True
            if not alone:
                request = _Request(bits)
                self._queue.append(request)
        if alone:  # the model was idle: no one to wait for, nothing to merge
            try:
                return self._pad_and_run([bits])[0]
            finally:
                self._hand_over()
        request.done.wait()
        if request.lead:  # the previous caller is done: run everything queued by now
            try:
                self._run(self._take())
            finally:
                self._hand_over()
        if request.error is not None:
            raise request.error
        assert request.result is not None, "a request is answered with a result or an error"
        return request.result

    def _hand_over(self) -> None:
        with self._lock:
            if self._queue:  # the oldest waiting request leads the next call
                self._queue[0].lead = True
                self._queue[0].done.set()
            else:
                self._busy = False

    def _take(self) -> list[_Request]:
        with self._lock:
            length = bucket(self._queue[0].bits.shape[1], MIN_LENGTH)
            batch: list[_Request] = []
            rows = 0
            for request in self._queue:
                n = request.bits.shape[0]
                if bucket(request.bits.shape[1], MIN_LENGTH) == length and (not batch or rows + n <= self.max_rows):
                    batch.append(request)
                    rows += n
            self._queue = [r for r in self._queue if r not in batch]
        return batch

    def _pad_and_run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        rows, length = sum(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)
        if not self.pad and len(arrays) == 1:
            self.calls += 1
            self.requests += 1
            return [self.forward(arrays[0])]
        if self.pad:
            rows, length = bucket(rows, MIN_ROWS), bucket(length, MIN_LENGTH)
        padded = np.zeros((rows, length), np.int32)
        start = 0
        for a in arrays:
            padded[start : start + a.shape[0], : a.shape[1]] = a
            start += a.shape[0]
        out = self.forward(padded)
        self.calls += 1
        self.requests += len(arrays)
        results, start = [], 0
        for a in arrays:
            results.append(out[start : start + a.shape[0], : a.shape[1]])
            start += a.shape[0]
        return results

    def _run(self, batch: list[_Request]) -> None:
        try:
            for request, result in zip(batch, self._pad_and_run([r.bits for r in batch])):
                request.result = result
        except BaseException as exc:  # noqa: BLE001 (every request of the call fails the same way)
            for request in batch:
                request.error = exc
        for request in batch:
            if not request.lead:
                request.done.set()
