"""ProgressWriter: the job record in the suite's Redis and every metric point once in the run on the real MLflow server."""

import re
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from contract.job import JobProgress
from contract.job_store import JobStore
from worker.engine.checkpoint import Checkpoint
from worker.engine.results import StepReport
from worker.tracking.progress import ProgressWriter
from worker.tracking.tracked_run import TrackedRun

# A job of 2 epochs of 50 steps that reports every 10 steps.
EPOCHS, STEPS, EVERY = 2, 100, 10
PER_EPOCH = STEPS // EPOCHS
LOSSES = np.linspace(0.7, 0.01, STEPS, dtype=np.float32)
EPOCH_LOSSES = [0.5, 0.02]
ACCURACY = [0.6, 0.99]


def report(step: int, window: tuple | None = None) -> StepReport:
    """What the engine reports after `step` steps, covering the EVERY steps before it."""
    epoch_done = step % PER_EPOCH == 0
    epoch = (step - 1) // PER_EPOCH + 1
    return StepReport(
        epoch=epoch,
        epochs=EPOCHS,
        step=step,
        steps=STEPS,
        loss=float(LOSSES[step - 1]),
        first_step=step - EVERY,
        losses=LOSSES[step - EVERY : step].copy(),
        epoch_done=epoch_done,
        epoch_loss=EPOCH_LOSSES[epoch - 1] if epoch_done else None,
        echo_accuracy=ACCURACY[epoch - 1] if epoch_done else None,
        window=window,
    )


def train(writer: ProgressWriter, start: int, end: int) -> None:
    """Report the steps from start (a multiple of EVERY) to end, as the engine would."""
    for step in range(start + EVERY, end + 1, EVERY):
        writer(report(step))


def checkpoint_at(step: int) -> Checkpoint:
    """A checkpoint after `step` steps (epoch metrics of the epochs it completed)."""
    epochs = step // PER_EPOCH
    return Checkpoint(
        epoch=epochs,
        done=(step % PER_EPOCH) // EVERY,
        step=step,
        rng_state={},
        eval_rng_state={},
        state=np.zeros((5, 4), np.float32),
        weights={},
        accumulators={},
        losses=LOSSES[:step].copy(),
        epoch_losses=EPOCH_LOSSES[:epochs],
        echo_accuracy=ACCURACY[:epochs],
    )


def steps_of(client: MlflowClient, run_id: str, key: str) -> list[int]:
    """The step of every point of key in the run, duplicates included."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def records(store: JobStore, job_id: str) -> Callable[[dict], None]:
    """What the attempt hands a writer: fields written to the job's record (here without a fence)."""
    return lambda fields: store.update(job_id, **fields)


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def job_id(store) -> str:
    return store.create({"num_epochs": EPOCHS}, steps=STEPS).id


@pytest.fixture
def tracker(settings, job_id) -> Iterator[TrackedRun]:
    """The job's run."""
    tracker = TrackedRun(settings, job_id, {"num_epochs": EPOCHS})
    yield tracker
    tracker.sender.stop()


@pytest.fixture
def resumed(store, job_id, settings, tracker) -> Iterator[Callable[[], ProgressWriter]]:
    """The writer of a worker that takes the job over: the same run reopened, the recorded progress."""
    reopened: list[TrackedRun] = []

    def take_over() -> ProgressWriter:
        reopened.append(TrackedRun(settings, job_id, {}, run_id=tracker.run_id))
        writer = ProgressWriter(records(store, job_id), reopened[-1], STEPS)
        writer.fraction = store.get(job_id).progress.fraction
        return writer

    yield take_over
    for logger in reopened:
        logger.sender.stop()


def test_a_job_sends_every_point_once_and_its_record_follows_each_report(store, job_id, tracker, client):
    writer = ProgressWriter(records(store, job_id), tracker, STEPS)
    train(writer, 0, 30)
    job = store.get(job_id)
    assert job.progress == JobProgress(epoch=1, epochs=EPOCHS, step=30, steps=STEPS, fraction=0.3)
    assert job.metrics.loss == pytest.approx(LOSSES[29]) and job.metrics.epoch_loss is None
    train(writer, 30, STEPS)
    tracker.flush()
    job = store.get(job_id)
    assert job.progress == JobProgress(epoch=EPOCHS, epochs=EPOCHS, step=STEPS, steps=STEPS, fraction=1.0)
    assert (job.metrics.loss, job.metrics.epoch_loss, job.metrics.echo_accuracy) == pytest.approx(
        (LOSSES[-1], EPOCH_LOSSES[-1], ACCURACY[-1])
    )
    history = sorted((m.step, m.value) for m in client.get_metric_history(tracker.run_id, "loss"))
    assert [s for s, _ in history] == list(range(STEPS))
    np.testing.assert_allclose([v for _, v in history], LOSSES, rtol=1e-6)
    assert sorted((m.step, m.value) for m in client.get_metric_history(tracker.run_id, "epoch_loss")) == [
        (1, 0.5),
        (2, 0.02),
    ]
    assert steps_of(client, tracker.run_id, "echo_accuracy") == [1, 2]
    np.testing.assert_array_equal(writer.losses, LOSSES)


def test_a_report_with_a_window_logs_a_figure_at_its_step(store, job_id, tracker, client):
    writer = ProgressWriter(records(store, job_id), tracker, STEPS)
    rng = np.random.default_rng(0)
    window = (rng.integers(0, 2, (5, 15)), rng.integers(0, 2, (5, 15)), rng.random((5, 15, 2)))
    train(writer, 0, 40)
    writer(report(50, window))
    tracker.flush()
    images = [a.path for a in client.list_artifacts(tracker.run_id, "images")]
    assert images and all(re.match(r"images/echo_figure[%+]step[%+]50[%+]", path) for path in images), images


def test_catch_up_sends_what_the_checkpoint_has_and_the_run_lacks(store, job_id, tracker, client, resumed):
    train(ProgressWriter(records(store, job_id), tracker, STEPS), 0, 30)
    tracker.flush()
    writer = resumed()
    writer.catch_up(checkpoint_at(60))  # the run holds 30 steps; the checkpoint 60 and the first epoch
    assert (writer.buckets_sent, writer.epochs_from) == (60, 1)
    train(writer, 60, STEPS)
    writer.tracker.flush()
    assert steps_of(client, tracker.run_id, "loss") == list(range(STEPS))
    assert steps_of(client, tracker.run_id, "epoch_loss") == [1, 2]
    assert steps_of(client, tracker.run_id, "echo_accuracy") == [1, 2]
    np.testing.assert_array_equal(writer.losses, LOSSES)


def test_a_resume_from_behind_what_the_run_holds_sends_only_the_missing_points(store, job_id, tracker, client, resumed):
    train(ProgressWriter(records(store, job_id), tracker, STEPS), 0, 80)  # the worker is lost after step 80
    tracker.flush()
    writer = resumed()
    writer.catch_up(checkpoint_at(40))  # its last checkpoint was at step 40
    assert (writer.buckets_sent, writer.epochs_from) == (80, 1)
    train(writer, 40, STEPS)
    writer.tracker.flush()
    assert steps_of(client, tracker.run_id, "loss") == list(range(STEPS))
    assert steps_of(client, tracker.run_id, "epoch_loss") == [1, 2]
    assert steps_of(client, tracker.run_id, "echo_accuracy") == [1, 2]


def test_a_resume_without_a_checkpoint_replays_from_the_start_and_sends_only_the_missing_points(
    store, job_id, tracker, client, resumed
):
    train(ProgressWriter(records(store, job_id), tracker, STEPS), 0, 70)
    tracker.flush()
    writer = resumed()
    writer.catch_up(None)
    assert (writer.buckets_sent, writer.epochs_from) == (70, 1)
    train(writer, 0, STEPS)
    writer.tracker.flush()
    assert steps_of(client, tracker.run_id, "loss") == list(range(STEPS))
    assert steps_of(client, tracker.run_id, "epoch_loss") == [1, 2]


def test_progress_never_goes_back_while_a_resumed_job_replays(store, job_id, tracker, resumed):
    train(ProgressWriter(records(store, job_id), tracker, STEPS), 0, 80)
    writer = resumed()
    writer.catch_up(checkpoint_at(40))
    train(writer, 40, 70)
    job = store.get(job_id)
    assert job.progress.step == 80 and job.progress.fraction == 0.8
    assert job.metrics.loss == pytest.approx(LOSSES[69]), "metrics still follow the replay"
    train(writer, 70, 90)
    assert store.get(job_id).progress.step == 90


def test_while_redis_does_not_answer_progress_is_skipped_and_training_does_not_wait(
    bare_redis, silent_port, job_id, tracker, client
):
    gone = JobStore(bare_redis(silent_port, socket_timeout=0.3), prefix="test-gone")
    writer = ProgressWriter(records(gone, job_id), tracker, STEPS)
    started = time.monotonic()
    train(writer, 0, STEPS)  # ten reports: one waits for the timeout, the next are skipped
    assert time.monotonic() - started < 2  # ten timeouts: 3 s
    tracker.flush()
    assert steps_of(client, tracker.run_id, "loss") == list(range(STEPS))


def test_a_long_job_sends_bucket_means_stamped_with_each_buckets_last_step(store, job_id, tracker, client):
    writer = ProgressWriter(
        records(store, job_id), tracker, STEPS, max_points=12
    )  # buckets of 9 steps: 11 full, 1 step left
    train(writer, 0, STEPS)
    writer.finish(STEPS)
    tracker.flush()
    ends = [*range(8, 99, 9), 99]
    history = sorted((m.step, m.value) for m in client.get_metric_history(tracker.run_id, "loss"))
    assert [s for s, _ in history] == ends
    starts = [0, *[e + 1 for e in ends[:-1]]]
    np.testing.assert_allclose(
        [v for _, v in history], [LOSSES[a : b + 1].mean() for a, b in zip(starts, ends)], rtol=1e-6
    )
    lows = sorted((m.step, m.value) for m in client.get_metric_history(tracker.run_id, "loss_min"))
    assert [s for s, _ in lows] == ends and lows[0][1] == pytest.approx(float(LOSSES[:9].min()))


def test_a_resumed_long_job_sends_every_bucket_once(store, job_id, tracker, client, resumed):
    first = ProgressWriter(records(store, job_id), tracker, STEPS, max_points=12)
    train(first, 0, 50)  # buckets 0–4 sent (steps 0–44); lost after step 50
    tracker.flush()
    writer = resumed()
    writer.bucket = first.bucket
    writer.catch_up(checkpoint_at(30))
    assert writer.buckets_sent == 5
    train(writer, 30, STEPS)
    writer.finish(STEPS)
    writer.tracker.flush()
    assert steps_of(client, tracker.run_id, "loss") == [*range(8, 99, 9), 99]


def test_a_sweeps_trial_sends_the_bucket_means_alone(store, job_id, tracker, client):
    """Its spread is in its loss_history.csv.gz: the server's time grows with the points a sweep sends."""
    writer = ProgressWriter(records(store, job_id), tracker, STEPS, max_points=12, spread=False)
    train(writer, 0, STEPS)
    writer.finish(STEPS)
    tracker.flush()
    assert steps_of(client, tracker.run_id, "loss") == [*range(8, 99, 9), 99]
    assert steps_of(client, tracker.run_id, "loss_min") == steps_of(client, tracker.run_id, "loss_max") == []
    assert len(steps_of(client, tracker.run_id, "epoch_loss")) == EPOCHS
