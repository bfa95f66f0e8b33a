"""Shared fixtures of the engine tests: one model trained once per test session."""

import pytest

from contract.params import TrainingParams
from worker.engine.results import TrainingResult
from worker.engine.train import train_model

# Five epochs at the tutorial's defaults. The seed is one that leaves the ln 2 plateau early: with
# the tutorial's uniform [0, 1) weights some seeds sit there for many epochs (see test_train.py).
TRAINED = TrainingParams(num_epochs=5, seed=2)
# A small job without a seed, on device="cpu": 2 epochs of 100 steps.
SMALL = TrainingParams(num_epochs=2, total_series_length=7_500, device="cpu")


@pytest.fixture(scope="session")
def trained() -> TrainingResult:
    """The tutorial's network after five epochs with a fixed seed."""
    return train_model(TRAINED)


@pytest.fixture(scope="session")
def small() -> TrainingResult:
    """A small job trained on device="cpu" with a seed drawn by the engine."""
    return train_model(SMALL)
