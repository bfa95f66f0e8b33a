"""The tutorial's data: bits, their echo, and the order windows are cut in."""

import numpy as np
import pytest

from contract.params import TrainingParams
from worker.engine.data import generate_epoch, generate_series, to_windows


@pytest.mark.parametrize("echo_step", [0, 1, 3, 7])
def test_series_is_the_input_delayed_by_echo_step(echo_step):
    x, y = generate_series(np.random.default_rng(0), 1_000, echo_step)
    assert x.shape == y.shape == (1_000,) and x.dtype == y.dtype == np.int32
    assert set(np.unique(x)) == {0, 1}
    np.testing.assert_array_equal(y[echo_step:], x[: 1_000 - echo_step])
    np.testing.assert_array_equal(y[:echo_step], 0)


def test_bits_are_balanced():
    x, _ = generate_series(np.random.default_rng(1), 100_000, 3)
    assert abs(x.mean() - 0.5) < 0.01


def test_epoch_shapes_and_types():
    p = TrainingParams()
    xs, ys = generate_epoch(np.random.default_rng(0), p)
    assert xs.shape == ys.shape == (666, 5, 15)
    assert xs.dtype == ys.dtype == np.int32
    assert xs.flags.c_contiguous and ys.flags.c_contiguous


@pytest.mark.parametrize("length, batch, width", [(50_000, 5, 15), (50_003, 5, 15), (1_000, 3, 7)])
def test_window_w_row_b_is_columns_w_T_to_w_plus_1_T_of_row_b(length, batch, width):
    p = TrainingParams(total_series_length=length, batch_size=batch, truncated_backprop_length=width)
    xs, ys = generate_epoch(np.random.default_rng(5), p)
    x, y = generate_series(np.random.default_rng(5), length, p.echo_step)  # the same draw
    cols = length // batch
    rows_x, rows_y = x[: batch * cols].reshape(batch, cols), y[: batch * cols].reshape(batch, cols)
    assert xs.shape == (cols // width, batch, width)
    for w in range(xs.shape[0]):
        for b in range(batch):
            np.testing.assert_array_equal(xs[w, b], rows_x[b, w * width : (w + 1) * width])
            np.testing.assert_array_equal(ys[w, b], rows_y[b, w * width : (w + 1) * width])


def test_leading_zeros_only_at_the_start_of_the_series():
    p = TrainingParams()
    _xs, ys = generate_epoch(np.random.default_rng(3), p)
    np.testing.assert_array_equal(ys[0, 0, : p.echo_step], 0)
    # Row 1 starts mid-series: its first echoed bits are row 0's last inputs, not zeros.
    cols = p.total_series_length // p.batch_size
    x, _ = generate_series(np.random.default_rng(3), p.total_series_length, p.echo_step)
    np.testing.assert_array_equal(ys[0, 1, : p.echo_step], x[cols - p.echo_step : cols])


def test_echo_crosses_window_boundaries_so_the_state_must_carry():
    p = TrainingParams()
    xs, ys = generate_epoch(np.random.default_rng(4), p)
    e, width = p.echo_step, p.truncated_backprop_length
    np.testing.assert_array_equal(ys[1:, :, :e], xs[:-1, :, width - e :])
    np.testing.assert_array_equal(ys[:, :, e:], xs[:, :, : width - e])


def test_fresh_data_every_epoch():
    p = TrainingParams()
    rng = np.random.default_rng(0)
    first, second = generate_epoch(rng, p), generate_epoch(rng, p)
    assert (first[0] != second[0]).mean() > 0.4


def test_to_windows_drops_the_remainder():
    p = TrainingParams(total_series_length=80, batch_size=2, truncated_backprop_length=15)
    series = np.arange(80, dtype=np.int32).reshape(2, 40)
    windows = to_windows(series, p)
    assert windows.shape == (2, 2, 15)
    np.testing.assert_array_equal(windows[1, 1], np.arange(55, 70))
