"""Checkpoints in a real Redis: each save writes only what changed, in bounded writes, and a resume reads back
exactly what was saved (the same run as the uninterrupted one), across attempts."""

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from contract.fence import Fence, LeaseLost, Step
from contract.job_store import JobStore, LeaseGrant
from contract.params import TrainingParams
from tests.support import Recording
from worker.attempt import checkpoints as checkpoints_module
from worker.attempt.checkpoints import Checkpoints
from worker.engine import group
from worker.engine.checkpoint import Checkpoint, GroupCheckpoint
from worker.engine.group import train_group

MB = 1_000_000
K = 32  # a sweep group of the largest size
STEPS_PER_SAVE = 16_600  # 2 s of a 32-model group at the engine's measured 8,313 steps/s (docs/benchmarks.md)
# Early stopping, a model stopped while others go on; checkpoints inside and between epochs.
STOPPING = [
    TrainingParams(
        num_epochs=6,
        total_series_length=7_500,
        device="cpu",
        init="glorot",
        seed=s,
        learning_rate=rate,
        target_loss=target,
    )
    for s, rate, target in ((3, 0.3, 0.01), (5, 0.3, None), (3, 1.0, 1e-6))
]


@pytest.fixture
def store(redis_client) -> Iterator[JobStore]:
    store = JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}")
    store.fenced = Recording(store)
    yield store
    for key in store.redis.scan_iter(f"{store.prefix}:*"):
        store.redis.delete(key)


def fence_of(store: JobStore, token: str = "attempt-1") -> Fence:
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running", lease=LeaseGrant(token, 60_000))
    return Fence(token, (store.lease_key(job.id),))


def synthetic(step: int, history: np.ndarray, epochs: int) -> GroupCheckpoint:
    """K models of the default shapes at step, their losses views of one history, epochs results each."""
    params = TrainingParams()
    shapes = {
        "W": (params.state_size + 1, params.state_size),
        "b": (params.state_size,),
        "W2": (params.state_size, params.num_classes),
        "b2": (params.num_classes,),
    }
    rng = np.random.default_rng(step)
    models = [
        Checkpoint(
            epoch=epochs,
            done=step - epochs * params.steps_per_epoch,
            step=step,
            rng_state={"k": k},
            eval_rng_state={"k": -k},
            state=rng.random((params.batch_size, params.state_size), np.float32),
            weights={n: rng.random(s, np.float32) for n, s in shapes.items()},
            accumulators={n: rng.random(s, np.float32) for n, s in shapes.items()},
            losses=history[k % 4][:step],
            epoch_losses=[0.5 / (e + 1) + k for e in range(epochs)],
            echo_accuracy=[min(1.0, e / 100) for e in range(epochs)],
        )
        for k in range(K)
    ]
    return GroupCheckpoint(models, [None] * K)


def assert_same(got: GroupCheckpoint, want: GroupCheckpoint) -> None:
    assert got.to_bytes() == want.to_bytes()


def test_each_save_of_a_32_model_group_writes_what_is_new_in_writes_under_1_mb(store):
    history = np.random.default_rng(0).random((4, 300_000), np.float32)  # four models' worth, shared by views
    saver, fence = Checkpoints(store, "group:s:0"), fence_of(store)
    per_save = []
    for save in range(1, 17):
        step = save * STEPS_PER_SAVE
        before = len(store.fenced.sizes)
        saver.save(fence, synthetic(step, history, step // 666))
        per_save.append(store.fenced.sizes[before:])
    assert max(max(s) for s in per_save) <= MB, per_save
    # Bytes per save: the same at step 16,600 and at step 265,600; never the whole history again.
    totals = [sum(s) for s in per_save]
    assert max(totals[1:]) < 1.01 * min(totals[1:]) and totals[-1] < 3 * MB, totals
    assert store.redis.strlen(saver.key) < 200_000  # the head: K models' weights, optimizer and state
    assert_same(
        Checkpoints(store, "group:s:0").load(), synthetic(16 * STEPS_PER_SAVE, history, 16 * STEPS_PER_SAVE // 666)
    )


def test_a_save_after_many_unsaved_steps_is_split_into_bounded_writes(store):
    history = np.random.default_rng(1).random((4, 100_000), np.float32)
    saver = Checkpoints(store, "group:s:1")
    saver.save(fence_of(store), synthetic(100_000, history, 150))  # 12.8 MB of losses at once
    assert len(store.fenced.sizes) >= 24 and max(store.fenced.sizes) <= MB, store.fenced.sizes
    assert_same(Checkpoints(store, "group:s:1").load(), synthetic(100_000, history, 150))


def test_both_keys_carry_the_job_records_ttl_and_go_together(store):
    saver, fence = Checkpoints(store, "job-1"), fence_of(store)
    saver.save(fence, synthetic(700, np.ones((4, 700), np.float32), 1))
    ttl_ms = (store.retention_s + 24 * 3600) * 1000
    assert all(ttl_ms - 60_000 < store.redis.pttl(key) <= ttl_ms for key in saver.keys)
    store.fenced.run(Step(fence).delete(saver.key).delete(saver.history_key))
    assert not any(store.redis.exists(key) for key in saver.keys)


def test_a_stale_attempt_writes_nothing(store):
    saver, fence = Checkpoints(store, "job-2"), fence_of(store)
    saver.save(fence, synthetic(700, np.ones((4, 700), np.float32), 1))
    store.redis.set(fence.leases[0], "attempt-2")  # another attempt took the job over
    pieces = store.redis.llen(saver.history_key)
    head = store.redis.get(saver.key)
    with pytest.raises(LeaseLost):
        saver.save(fence, synthetic(1400, np.ones((4, 1400), np.float32), 2))
    assert store.redis.llen(saver.history_key) == pieces and store.redis.get(saver.key) == head


def test_a_history_missing_a_piece_is_refused_and_training_starts_over(store):
    saver, fence = Checkpoints(store, "job-3"), fence_of(store)
    history = np.random.default_rng(2).random((4, 3000), np.float32)
    for step in (1000, 2000, 3000):
        saver.save(fence, synthetic(step, history, step // 666))
    assert Checkpoints(store, "job-3").load() is not None
    store.redis.lset(saver.history_key, 1, store.redis.lindex(saver.history_key, 0))  # the second save's piece lost
    assert Checkpoints(store, "job-3").load() is None


def test_a_fresh_attempt_starts_the_history_over(store):
    fence = fence_of(store)
    history = np.random.default_rng(3).random((4, 5000), np.float32)
    Checkpoints(store, "job-4").save(fence, synthetic(5000, history, 7))
    other = np.random.default_rng(4).random((4, 5000), np.float32)
    Checkpoints(store, "job-4").save(fence, synthetic(1000, other, 1))  # did not resume: its own history only
    assert store.redis.llen(Checkpoints(store, "job-4").history_key) == 1
    assert_same(Checkpoints(store, "job-4").load(), synthetic(1000, other, 1))


def test_resuming_from_redis_across_attempts_reproduces_the_uninterrupted_run(store, monkeypatch):
    """Attempts that each resume from what the previous one saved end exactly as the group trained at once."""
    monkeypatch.setattr(group, "CHUNK_TARGET_S", 0.0)  # a compiled call per window: checkpoints inside epochs
    monkeypatch.setattr(checkpoints_module, "PIECE_BYTES", 1000)  # several pieces a save
    uninterrupted = train_group(STOPPING)
    steps = STOPPING[0].steps_per_epoch
    fence = fence_of(store)
    loaded: dict[int, GroupCheckpoint | None] = {}
    saver = Checkpoints(store, "group:s:2")

    def save_and_read_back(c: GroupCheckpoint) -> None:
        saver.save(fence, c)
        at = c.models[1].step
        if at in (steps // 2, 2 * steps, 4 * steps + 7) and at not in loaded:
            loaded[at] = Checkpoints(store, "group:s:2").load()  # as a new attempt reads it

    train_group(STOPPING, on_checkpoint=save_and_read_back, checkpoint_every_s=0)
    assert sorted(loaded) == [steps // 2, 2 * steps, 4 * steps + 7]
    assert loaded[4 * steps + 7].models[0].step == 3 * steps and loaded[4 * steps + 7].windows[0] is not None
    for at, checkpoint in loaded.items():
        for got, want in zip(train_group(STOPPING, resume=checkpoint), uninterrupted):
            assert np.array_equal(got.losses, want.losses), at
            assert got.epoch_losses == want.epoch_losses and got.echo_accuracy == want.echo_accuracy
            assert got.stopped_early == want.stopped_early
            for name, value in want.weights.items():
                assert np.array_equal(got.weights[name], value), (at, name)

    # A second attempt resumes from the first's checkpoint, appends to its history, then a third resumes.
    second = Checkpoints(store, "group:s:3")
    second.save(fence, loaded[steps // 2])
    resumer = Checkpoints(store, "group:s:3")
    start = resumer.load()
    later: list[GroupCheckpoint | None] = []

    def save_then_stop(c: GroupCheckpoint) -> None:
        resumer.save(fence, c)
        if c.models[1].step >= 3 * steps + 11:
            later.append(Checkpoints(store, "group:s:3").load())
            raise KeyboardInterrupt  # the attempt's worker is lost here

    with pytest.raises(KeyboardInterrupt):
        train_group(STOPPING, resume=start, on_checkpoint=save_then_stop, checkpoint_every_s=0)
    for got, want in zip(train_group(STOPPING, resume=later[0]), uninterrupted):
        assert np.array_equal(got.losses, want.losses) and got.epoch_losses == want.epoch_losses


def test_a_halving_groups_schedule_is_kept_with_its_checkpoint(store):
    history = np.random.default_rng(1).random((4, 2_000), np.float32)
    schedule = {"slots": [0, 3, None, 5], "pruned": [None, 1, 1] + [None] * (K - 3), "rungs": [[]] * K}
    saver, fence = Checkpoints(store, "group:s:9"), fence_of(store)
    saved = synthetic(1_000, history, 2)
    saved.halving = schedule
    saver.save(fence, saved)
    loaded = Checkpoints(store, "group:s:9").load()
    assert loaded is not None and loaded.halving == schedule
    assert_same(loaded, saved)
