"""Groups: K models in one compiled loop, each trained exactly as the same parameters trained as a job."""

import numpy as np
import pytest

from contract.params import TrainingParams
from worker.engine import group, group_model
from worker.engine.group import GroupCheckpoint, train_group
from worker.engine.results import StepReport, TrainingCancelled, TrainingResult
from worker.engine.train import train_model

# Epochs of 100 steps; the models differ in everything a group lets them differ in.
BASE = TrainingParams(num_epochs=2, total_series_length=7_500, device="cpu")
MIXED = [
    BASE.model_copy(update={"seed": 1}),
    BASE.model_copy(update={"seed": 2, "learning_rate": 0.1}),
    BASE.model_copy(update={"seed": 5, "learning_rate": 0.5, "init": "glorot", "echo_step": 2}),
]
# Glorot, 6 epochs: seed 3 at 0.3 reaches 0.01 after its third epoch; the third model's target is out of reach
# (1e-6: whether seed 3 at 1.0 reaches 0.01 within 6 epochs depended on the CPU's float kernels).
STOPPING = [
    BASE.model_copy(update={"num_epochs": 6, "init": "glorot", "seed": 3, "target_loss": 0.01}),
    BASE.model_copy(update={"num_epochs": 6, "init": "glorot", "seed": 5}),
    BASE.model_copy(update={"num_epochs": 6, "init": "glorot", "seed": 3, "learning_rate": 1.0, "target_loss": 1e-6}),
]
TOL = dict(rtol=1e-5, atol=1e-5)


def assert_same_run(got: TrainingResult, want: TrainingResult) -> None:
    """Bit for bit: the losses, epoch metrics, weights, last window, early stop and evaluation."""
    assert np.array_equal(got.losses, want.losses)
    assert got.epoch_losses == want.epoch_losses and got.echo_accuracy == want.echo_accuracy
    assert got.stopped_early == want.stopped_early and got.evaluation == want.evaluation
    for name, value in want.weights.items():
        assert np.array_equal(got.weights[name], value), name
    for part, value in zip(got.last_window, want.last_window):
        assert np.array_equal(part, value)


@pytest.fixture(scope="module")
def stopping() -> tuple[list[TrainingResult], list[list[StepReport | None]], list[bytes]]:
    """The stopping group trained once, every progress report and a checkpoint after each window kept."""
    reports: list[list[StepReport | None]] = []
    taken: list[bytes] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(group, "CHUNK_TARGET_S", 0.0)  # a compiled call per window: checkpoints inside epochs too
        results = train_group(
            STOPPING,
            on_progress=reports.append,
            on_checkpoint=lambda c: taken.append(c.to_bytes()),
            checkpoint_every_s=0,
        )
    return results, reports, taken


def test_each_model_trains_as_its_own_job():
    results = train_group(MIXED)
    for params, result in zip(MIXED, results):
        alone = train_model(params)
        steps = params.steps_per_epoch
        np.testing.assert_allclose(result.losses[:steps], alone.losses[:steps], **TOL)  # the bar
        np.testing.assert_allclose(result.losses, alone.losses, **TOL)
        for name, value in alone.weights.items():
            np.testing.assert_allclose(result.weights[name], value, **TOL, err_msg=name)
        np.testing.assert_allclose(result.epoch_losses, alone.epoch_losses, **TOL)
        assert result.params == params and len(result.epoch_seconds) == params.num_epochs
        assert result.evaluation is not None and result.last_window[2].shape == (5, 15, 2)
    assert len({float(r.losses[-1]) for r in results}) == len(MIXED)


def test_a_model_that_reaches_its_target_stops_and_the_others_go_on(stopping):
    results, reports, _ = stopping
    stopped, full, missed = results
    assert stopped.stopped_early == len(stopped.epoch_losses) == 3 and stopped.epoch_losses[-1] <= 0.01
    assert len(stopped.losses) == 3 * BASE.steps_per_epoch
    assert full.stopped_early is None is missed.stopped_early
    assert len(full.epoch_losses) == len(missed.epoch_losses) == 6
    assert_same_run(stopped, train_model(STOPPING[0]))  # frozen where it stopped, as the job ends there
    # It reports up to its last epoch, then nothing; the others report every step once.
    mine = [g[0] for g in reports]
    last = max(i for i, r in enumerate(mine) if r is not None)
    assert mine[last].epoch_done and mine[last].epoch == 3 and all(r is None for r in mine[last + 1 :])
    for k, result in enumerate(results):
        own = [g[k] for g in reports if g[k] is not None]
        assert np.array_equal(np.concatenate([r.losses for r in own]), result.losses)
        assert [r.epoch_loss for r in own if r.epoch_done] == result.epoch_losses


def test_resuming_a_group_reproduces_the_uninterrupted_run(stopping):
    results, _, taken = stopping
    checkpoints = [GroupCheckpoint.from_bytes(b) for b in taken]
    steps = BASE.steps_per_epoch
    position = [c.models[1].step for c in checkpoints]
    chosen = [
        position.index(steps // 2),
        position.index(2 * steps),  # inside an epoch, between epochs
        position.index(4 * steps + 7),
        position.index(5 * steps),
    ]  # after the first model stopped
    for index in chosen:
        checkpoint = checkpoints[index]
        if checkpoint.models[1].step > 3 * steps:
            assert checkpoint.models[0].step == 3 * steps and checkpoint.windows[0] is not None
        for got, want in zip(train_group(STOPPING, resume=checkpoint), results):
            assert_same_run(got, want)


def test_a_group_checkpoint_survives_serialisation(stopping):
    _, _, taken = stopping
    copy = GroupCheckpoint.from_bytes(taken[-1])
    assert copy.to_bytes() == taken[-1] and len(copy.models) == 3 and copy.windows[1:] == [None, None]


def test_cancelling_stops_every_model():
    reports: list[list[StepReport | None]] = []
    with pytest.raises(TrainingCancelled):
        train_group(
            [p.model_copy(update={"num_epochs": 50}) for p in MIXED],
            on_progress=reports.append,
            should_stop=lambda: bool(reports),
        )
    assert reports and all(r.epoch == 1 for g in reports for r in g)


def test_the_compiled_loop_is_reused_for_the_next_group_of_the_same_shapes():
    train_group(MIXED)
    trainer = next(t for t in group_model._TRAINERS.values() if t.models == len(MIXED))
    traced = trainer.run_windows.experimental_get_tracing_count()
    others = [p.model_copy(update={"seed": p.seed + 10, "learning_rate": p.learning_rate * 2}) for p in MIXED]
    train_group(others)
    assert next(t for t in group_model._TRAINERS.values() if t.models == len(MIXED)) is trainer
    assert trainer.run_windows.experimental_get_tracing_count() == traced


def test_jobs_whose_epochs_differ_in_length_share_one_compilation():
    short, long = (BASE.model_copy(update={"total_series_length": n}) for n in (7_500, 15_000))  # 100, 200 windows
    assert (
        group_model.epoch_capacity(short.steps_per_epoch, 1, short)
        == group_model.epoch_capacity(long.steps_per_epoch, 1, long)
        == 1024
    )
    capacity = 1024

    def trainer() -> group_model.GroupTrainer:
        [found] = [t for key, t in group_model._TRAINERS.items() if key[1] == 1 and key[-1] == capacity]
        return found

    train_model(short)
    first = trainer()
    traced = first.run_windows.experimental_get_tracing_count()
    result = train_model(long)
    assert trainer() is first
    assert first.run_windows.experimental_get_tracing_count() == traced
    assert len(result.losses) == long.total_steps and np.isfinite(result.losses).all()
    assert result.epoch_losses == [
        pytest.approx(float(result.losses[e * 200 : (e + 1) * 200].mean())) for e in range(2)
    ]


def test_padding_stays_small_for_wide_windows_and_many_models():
    assert group_model.epoch_capacity(666, 1, BASE) == 1024  # the default job
    assert group_model.epoch_capacity(1500, 1, BASE) == 2048  # past it: the next power of two
    wide = BASE.model_copy(update={"batch_size": 100, "truncated_backprop_length": 50})
    assert group_model.epoch_capacity(2, 32, wide) == 4  # 640 KB a window: padded only as far as 4 MiB hold
    assert group_model.epoch_capacity(266, 32, BASE) == 512  # a sweep's group of 32: 4 MiB hold 436 windows
    huge = BASE.model_copy(update={"batch_size": 1024, "truncated_backprop_length": 64})
    assert group_model.epoch_capacity(76, 32, huge) == 76  # 8 MiB a window: padding to 128 would add 416 MiB


def test_a_group_must_share_its_shapes():
    with pytest.raises(ValueError, match="state_size"):
        train_group([BASE, BASE.model_copy(update={"state_size": 6})])
    with pytest.raises(ValueError, match="at least one"):
        train_group([])
