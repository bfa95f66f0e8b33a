"""MetricSender against the real MLflow server: every point once, in step order, in batches the server takes."""

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_METRICS_PER_BATCH as SERVER_LIMIT

from tests.support import wait_for
from worker.tracking.metric_sender import MAX_METRICS_PER_BATCH, MetricSender
from worker.tracking.mlflow_retry import MlflowUnavailable, mlflow_outage


class RecordingClient(MlflowClient):
    """The real client, remembering the (key, step) of every batch it sent."""

    def __init__(self, tracking_uri: str):
        super().__init__(tracking_uri=tracking_uri)
        self.batches: list[list[tuple[str, int]]] = []
        self.sizes: list[tuple[int, int, int]] = []  # each batch's points, parameters and tags

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        result = super().log_batch(run_id, metrics=metrics, params=params, tags=tags, **kwargs)
        self.batches.append([(m.key, m.step) for m in metrics])
        self.sizes.append((len(metrics), len(params), len(tags)))
        return result


@pytest.fixture
def recording(mlflow_url) -> RecordingClient:
    return RecordingClient(mlflow_url)


@pytest.fixture
def sender(recording, run_id) -> Iterator[MetricSender]:
    """A sender to a fresh run, flushing every 50 ms."""
    sender = MetricSender(recording, run_id, 0.05, mlflow_outage(recording.tracking_uri, 10))
    yield sender
    sender.stop()


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float, int]]:
    """(step, value, timestamp) of every point of key on the server, by step."""
    return sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key))


def test_points_reach_the_run_once_each_with_their_steps_values_and_timestamps(sender, client, run_id):
    sender.put("loss", [0.9, 0.8, 0.7], 0, 1_000)
    sender.put("loss", np.array([0.6, 0.5], np.float32), 3, 2_000)
    sender.put("epoch_loss", [0.75], 1, 3_000)
    sender.drain()
    assert sender.pending == 0
    assert history(client, run_id, "loss") == [
        (0, 0.9, 1_000),
        (1, 0.8, 1_000),
        (2, 0.7, 1_000),
        (3, pytest.approx(0.6), 2_000),
        (4, pytest.approx(0.5), 2_000),
    ]
    assert history(client, run_id, "epoch_loss") == [(1, 0.75, 3_000)]


def test_batches_are_split_at_the_servers_limit_in_the_order_points_were_queued(sender, recording, client, run_id):
    sender.put("loss", np.arange(1500) / 1500, 0, 1)
    sender.put("epoch_loss", [0.5], 1, 1)
    sender.put("loss", np.arange(1500, 2600) / 1500, 1500, 1)
    sender.drain()
    sent = [point for batch in recording.batches for point in batch]
    # MLflow's client would split a longer batch itself, but the sender retries a batch as a whole.
    assert max(len(b) for b in recording.batches) == SERVER_LIMIT
    assert sent == [("loss", s) for s in range(1500)] + [("epoch_loss", 1)] + [("loss", s) for s in range(1500, 2600)]
    steps = [step for step, _, _ in history(client, run_id, "loss")]
    assert steps == list(range(2600))


def test_a_full_batch_is_sent_without_waiting_for_the_interval(recording, run_id, client):
    sender = MetricSender(recording, run_id, 60, mlflow_outage(recording.tracking_uri, 10))
    try:
        sender.put("loss", np.zeros(MAX_METRICS_PER_BATCH - 1), 0, 1)
        sender.put("loss", [1.0], MAX_METRICS_PER_BATCH - 1, 1)
        wait_for(lambda: sender.pending == 0 and recording.batches, 10, "a full batch sent")
        assert len(client.get_metric_history(run_id, "loss")) == MAX_METRICS_PER_BATCH
    finally:
        sender.stop()


def test_queued_points_are_sent_every_interval_without_a_drain(sender, client, run_id):
    sender.put("loss", [0.1, 0.2], 0, 1)
    wait_for(lambda: len(client.get_metric_history(run_id, "loss")) == 2, 5, "points sent by the interval")


def test_nothing_is_sent_for_an_empty_put_and_arrays_are_flattened(sender, recording, client, run_id):
    sender.put("loss", [], 0, 1)
    sender.put("loss", np.array([[1.0, 2.0], [3.0, 4.0]]), 10, 1)
    assert sender.pending == 4
    sender.drain()
    assert [(s, v) for s, v, _ in history(client, run_id, "loss")] == [(10, 1.0), (11, 2.0), (12, 3.0), (13, 4.0)]
    assert len(recording.batches) == 1


def test_drain_waits_for_a_batch_already_being_sent(sender, client, run_id):
    sender.put("loss", np.ones(3000), 0, 1)  # three batches: drain starts while one is in flight
    wait_for(lambda: sender.pending < 3000, 5, "the first batch taken", interval=0.01)
    sender.drain()
    assert len(client.get_metric_history(run_id, "loss")) == 3000


def test_an_unreachable_server_sets_the_error_and_put_raises(fail_fast_mlflow, closed_port):
    uri = f"http://127.0.0.1:{closed_port}"
    sender = MetricSender(MlflowClient(tracking_uri=uri), "r" * 32, 0.05, mlflow_outage(uri, 0.3))
    try:
        sender.put("loss", [0.5], 0, 1)
        with pytest.raises(MlflowUnavailable, match=rf"^MLflow at {uri} unreachable .* while sending 1 metric points"):
            sender.drain()
        assert sender.error and sender.error.startswith(f"MLflow at {uri} unreachable")
        with pytest.raises(MlflowUnavailable):
            sender.put("loss", [0.4], 1, 2)
        with pytest.raises(MlflowUnavailable):
            sender.check()
    finally:
        sender.stop()
    assert not sender._thread.is_alive()


def test_a_refusal_of_the_server_fails_the_sender_at_once(client):
    sender = MetricSender(client, "0" * 32, 0.05, mlflow_outage(client.tracking_uri, 30))
    try:
        sender.put("loss", [0.5], 0, 1)
        started = time.monotonic()
        with pytest.raises(MlflowUnavailable, match=r"^MLflow did not accept metrics: "):
            sender.drain()
        assert time.monotonic() - started < 5, "not retried"
    finally:
        sender.stop()


def test_stop_ends_the_thread_without_sending_what_is_left(recording, run_id):
    sender = MetricSender(recording, run_id, 60, mlflow_outage(recording.tracking_uri, 10))
    sender.put("loss", [1.0], 0, 1)
    sender.stop()
    assert not sender._thread.is_alive() and sender.pending == 1 and not recording.batches


def test_points_put_from_threads_while_sending_all_arrive(sender, client, run_id):
    def put(key: str) -> None:
        for first in range(0, 1500, 100):
            sender.put(key, np.full(100, first), first, 1)

    threads = [threading.Thread(target=put, args=(key,)) for key in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sender.drain()
    for key in ("a", "b"):
        points = history(client, run_id, key)
        assert [s for s, _, _ in points] == list(range(1500)) and all(v == s // 100 * 100 for s, v, _ in points)


def test_draining_a_stopped_sender_with_points_left_raises_instead_of_waiting_forever(fail_fast_mlflow, closed_port):
    uri = f"http://127.0.0.1:{closed_port}"
    sender = MetricSender(MlflowClient(tracking_uri=uri), "r" * 32, 60, mlflow_outage(uri, 1))
    sender.put("loss", [1.0], 0, 1)
    sender.stop()
    raised: list[BaseException] = []

    def drain() -> None:
        try:
            sender.drain()
        except MlflowUnavailable as exc:
            raised.append(exc)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    thread.join(3)
    assert not thread.is_alive() and raised and "1 metric points unsent" in str(raised[0])


def test_parameters_and_tags_go_with_the_points_in_one_request(sender, recording, client, run_id):
    sender.put_params({"learning_rate": "0.3", "seed": "1"})
    sender.put_tags({"pruned": "false"})
    sender.put_tags({"pruned": "true", "pruned_rung": "1"})  # set again: the later value
    sender.put("loss", [0.9, 0.8], 0, 1)
    assert sender.pending == 6
    sender.drain()
    assert recording.sizes == [(2, 2, 2)]
    run = client.get_run(run_id)
    assert run.data.params == {"learning_rate": "0.3", "seed": "1"}
    assert {k: run.data.tags[k] for k in ("pruned", "pruned_rung")} == {"pruned": "true", "pruned_rung": "1"}
    assert [s for s, _, _ in history(client, run_id, "loss")] == [0, 1]


def test_batches_with_parameters_and_tags_stay_within_the_servers_limits(sender, recording, client, run_id):
    sender.put_params({f"p{i}": str(i) for i in range(130)})
    sender.put_tags({f"t{i}": str(i) for i in range(120)})
    sender.put("loss", np.zeros(1500), 0, 1)
    sender.drain()
    assert all(p <= 100 and t <= 100 and m + p + t <= SERVER_LIMIT for m, p, t in recording.sizes), recording.sizes
    run = client.get_run(run_id)
    assert len(run.data.params) == 130 and all(f"t{i}" in run.data.tags for i in range(120))
    assert len(client.get_metric_history(run_id, "loss")) == 1500


def test_send_now_sends_what_is_queued_without_waiting_for_the_interval(recording, run_id, client):
    sender = MetricSender(recording, run_id, 60, mlflow_outage(recording.tracking_uri, 10))
    try:
        sender.put("loss", [0.5], 0, 1)
        time.sleep(0.3)
        assert not recording.batches, "waits for its interval"
        sender.send_now()
        wait_for(lambda: len(client.get_metric_history(run_id, "loss")) == 1, 10, "the point sent at once")
        sender.put("eval_loss", [0.1], 1, 1)  # and what comes after it
        wait_for(lambda: len(client.get_metric_history(run_id, "eval_loss")) == 1, 10, "a later point sent at once")
    finally:
        sender.stop()
