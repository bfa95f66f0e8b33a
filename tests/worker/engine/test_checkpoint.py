"""Checkpoints: a run resumed from any of them ends exactly where an uninterrupted run does."""

import numpy as np
import pytest

from contract.params import TrainingParams
from worker.engine.checkpoint import Checkpoint
from worker.engine.train import train_model


@pytest.fixture(scope="module")
def runs():
    # Epochs of 1.3 s: checkpoints fall both between and inside epochs.
    params = TrainingParams(num_epochs=3, seed=3, total_series_length=2_000_000)
    taken: list[bytes] = []
    full = train_model(params, on_checkpoint=lambda c: taken.append(c.to_bytes()), checkpoint_every_s=0)
    return params, full, [Checkpoint.from_bytes(b) for b in taken]


def test_checkpoints_are_offered_inside_and_between_epochs(runs):
    params, _, taken = runs
    assert any(c.done > 0 for c in taken) and any(c.done == 0 and c.epoch > 0 for c in taken)
    assert all(c.step == c.epoch * params.steps_per_epoch + c.done for c in taken)
    assert [c.step for c in taken] == sorted(c.step for c in taken)


def test_resuming_reproduces_the_uninterrupted_run(runs):
    params, full, taken = runs
    for checkpoint in (taken[1], taken[len(taken) // 2], taken[-1]):
        resumed = train_model(params, resume=checkpoint)
        assert np.array_equal(resumed.losses, full.losses), checkpoint.step
        assert resumed.epoch_losses == full.epoch_losses and resumed.echo_accuracy == full.echo_accuracy
        for name, value in full.weights.items():
            assert np.array_equal(resumed.weights[name], value)


def test_a_checkpoint_survives_serialisation(runs):
    _, _, taken = runs
    original = taken[1]
    copy = Checkpoint.from_bytes(original.to_bytes())
    assert (copy.epoch, copy.done, copy.step, copy.rng_state) == (
        original.epoch,
        original.done,
        original.step,
        original.rng_state,
    )
    assert np.array_equal(copy.state, original.state) and np.array_equal(copy.losses, original.losses)
    assert all(np.array_equal(copy.accumulators[k], v) for k, v in original.accumulators.items())


def test_without_the_carried_state_a_resume_differs(runs):
    """The test above can fail: a checkpoint missing what it must hold does not reproduce the run."""
    params, full, taken = runs
    broken = next(c for c in taken if c.done > 0)
    broken.state = np.zeros_like(broken.state)
    assert not np.array_equal(train_model(params, resume=broken).losses, full.losses)
