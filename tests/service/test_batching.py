"""Leader/follower batching: concurrent requests become one call, and each gets its own rows back."""

import threading
import time

import numpy as np
import pytest

from service.batching import Batcher, bucket


def causal(bits: np.ndarray) -> np.ndarray:
    """A stand-in forward pass with the RNN's one property that batching relies on: outputs are causal."""
    return np.cumsum(bits, axis=1, dtype=np.float32) / np.arange(1, bits.shape[1] + 1, dtype=np.float32)


class Recording:
    """A forward pass that records the shapes it was called with and takes a while, so callers pile up."""

    def __init__(self, seconds: float = 0.0, fail: bool = False):
        self.shapes: list[tuple[int, int]] = []
        self.seconds, self.fail = seconds, fail
        self.lock = threading.Lock()

    def __call__(self, bits: np.ndarray) -> np.ndarray:
        with self.lock:
            self.shapes.append(bits.shape)
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("the model failed")
        return causal(bits)


def concurrently(batcher: Batcher, arrays: list[np.ndarray]) -> list:
    """Call the batcher from one thread per array, all at once; results (or exceptions) in order."""
    out: list = [None] * len(arrays)
    start = threading.Barrier(len(arrays))

    def call(i: int) -> None:
        start.wait()
        try:
            out[i] = batcher(arrays[i])
        except Exception as exc:  # noqa: BLE001 (the test looks at what each caller got)
            out[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(arrays))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return out


@pytest.mark.parametrize(
    "n, least, want", [(1, 1, 1), (3, 1, 4), (16, 16, 16), (17, 16, 32), (100, 16, 128), (5, 16, 16)]
)
def test_bucket(n, least, want):
    assert bucket(n, least) == want


def test_alone_a_request_runs_at_once_on_its_bucket_shape():
    forward = Recording()
    bits = np.random.default_rng(0).integers(0, 2, (1, 100)).astype(np.int32)
    np.testing.assert_array_equal(Batcher(forward, 64)(bits), causal(bits))
    assert forward.shapes == [(1, 128)]


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    forward = Recording(seconds=0.05)
    batcher = Batcher(forward, 64)
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 2, (1 + i % 3, 90 + i)).astype(np.int32) for i in range(12)]
    results = concurrently(batcher, arrays)
    for bits, got in zip(arrays, results):
        np.testing.assert_array_equal(got, causal(bits))  # padding rows and columns never leak in
    assert len(forward.shapes) < len(arrays), "requests that waited were merged"
    assert batcher.requests == len(arrays) and batcher.calls == len(forward.shapes)


def test_lengths_of_other_buckets_are_not_merged():
    forward = Recording(seconds=0.05)
    rng = np.random.default_rng(2)
    arrays = [rng.integers(0, 2, (1, length)).astype(np.int32) for length in (20, 20, 20, 1000, 1000, 20)]
    results = concurrently(Batcher(forward, 64), arrays)
    for bits, got in zip(arrays, results):
        np.testing.assert_array_equal(got, causal(bits))
    assert {length for _, length in forward.shapes} == {32, 1024}


def test_calls_stay_within_max_rows():
    forward = Recording(seconds=0.05)
    arrays = [np.ones((3, 10), np.int32) for _ in range(10)]
    results = concurrently(Batcher(forward, 8), arrays)
    assert all(np.array_equal(r, causal(a)) for r, a in zip(results, arrays))
    assert max(rows for rows, _ in forward.shapes) <= 8


def test_a_failing_call_fails_each_of_its_requests_and_the_next_ones_still_run():
    forward = Recording(seconds=0.05, fail=True)
    batcher = Batcher(forward, 64)
    results = concurrently(batcher, [np.ones((1, 10), np.int32) for _ in range(6)])
    assert all(isinstance(r, RuntimeError) for r in results)
    forward.fail = False
    np.testing.assert_array_equal(batcher(np.ones((1, 10), np.int32)), causal(np.ones((1, 10), np.int32)))
