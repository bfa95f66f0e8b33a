"""The training-parameter schema: the tutorial's defaults, a concrete seed, clear errors, no TensorFlow."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from contract.params import MAX_EPOCH_BITS, MAX_TOTAL_STEPS, TrainingParams

ROOT = Path(__file__).resolve().parents[2]


def errors_of(**fields) -> list[ErrorDetails]:
    with pytest.raises(ValidationError) as caught:
        TrainingParams(**fields)
    return caught.value.errors()


def test_defaults_are_the_tutorials():
    p = TrainingParams()
    assert (p.num_epochs, p.total_series_length, p.truncated_backprop_length) == (100, 50_000, 15)
    assert (p.state_size, p.num_classes, p.echo_step, p.batch_size) == (4, 2, 3, 5)
    assert p.learning_rate == 0.3
    assert p.steps_per_epoch == 50_000 // 5 // 15 == 666
    assert p.total_steps == 66_600
    assert p.seed is None and p.device == "auto"


def test_resolved_fills_a_seed_and_keeps_a_given_one():
    resolved = TrainingParams().resolved()
    assert isinstance(resolved.seed, int) and 0 <= resolved.seed < 2**32
    assert resolved.model_dump(exclude={"seed"}) == TrainingParams().model_dump(exclude={"seed"})
    assert TrainingParams(seed=7).resolved().seed == 7


def test_unknown_field_is_named():
    (error,) = errors_of(num_epoch=3)
    assert error["loc"] == ("num_epoch",) and error["type"] == "extra_forbidden"


def test_series_too_short_for_one_window():
    (error,) = errors_of(total_series_length=74)  # 5 rows × 15 columns need 75 bits
    assert "total_series_length (74) is too short for one window" in error["msg"]
    assert "75" in error["msg"]
    assert TrainingParams(total_series_length=75).steps_per_epoch == 1


def test_echo_step_must_be_inside_the_series():
    (error,) = errors_of(total_series_length=100, echo_step=100)
    assert "echo_step (100)" in error["msg"] and "total_series_length (100)" in error["msg"]
    assert TrainingParams(total_series_length=100, echo_step=99).echo_step == 99


@pytest.mark.parametrize("rate", [math.nan, math.inf, -math.inf, -0.1, 0.0])
def test_learning_rate_must_be_finite_and_positive(rate):
    errors = errors_of(learning_rate=rate)
    assert [e["loc"] for e in errors] == [("learning_rate",)]


def test_bad_device_is_named():
    (error,) = errors_of(device="tpu")
    assert error["loc"] == ("device",)
    assert "'auto', 'cpu' or 'gpu'" in error["msg"]


def test_too_many_steps():
    (error,) = errors_of(num_epochs=10_000)
    assert "too long" in error["msg"] and "num_epochs" in error["msg"]
    assert str(MAX_TOTAL_STEPS) in error["msg"]
    assert TrainingParams(num_epochs=MAX_TOTAL_STEPS // 666).total_steps <= MAX_TOTAL_STEPS


def test_too_many_bits():
    # 76 steps per epoch keeps the step count legal; the bits alone are too many.
    fields = dict(total_series_length=5_000_000, batch_size=1024, truncated_backprop_length=64)
    (error,) = errors_of(num_epochs=101, **fields)
    assert "num_epochs × total_series_length" in error["msg"] and str(MAX_EPOCH_BITS) in error["msg"]
    assert TrainingParams(num_epochs=100, **fields).total_steps < MAX_TOTAL_STEPS


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_epochs", 0),
        ("state_size", 0),
        ("num_classes", 1),
        ("batch_size", 0),
        ("seed", -1),
        ("truncated_backprop_length", 65),
        ("echo_step", -1),
    ],
)
def test_field_bounds_are_named(field, value):
    assert [e["loc"] for e in errors_of(**{field: value})] == [(field,)]


def test_params_are_frozen():
    with pytest.raises(ValidationError):
        TrainingParams().num_epochs = 3


def test_importing_params_does_not_import_tensorflow():
    code = "import contract.params, sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "field, value", [("init", "xavier"), ("init", 1), ("target_loss", 0), ("target_loss", 1.5), ("target_loss", "0.1")]
)
def test_init_and_target_loss_are_validated_by_the_same_schema(field, value):
    assert [e["loc"] for e in errors_of(**{field: value})] == [(field,)]


def test_the_tutorials_init_and_every_epoch_are_the_defaults():
    params = TrainingParams()
    assert params.init == "tutorial" and params.target_loss is None
    assert TrainingParams(init="glorot", target_loss=0.01).target_loss == 0.01
