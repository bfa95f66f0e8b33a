"""The tutorial's data: random bits and their echo, cut into training windows."""

import numpy as np

from contract.params import TrainingParams


def generate_series(rng: np.random.Generator, length: int, echo_step: int) -> tuple[np.ndarray, np.ndarray]:
    """Random bits (p = 0.5) and the same bits delayed by echo_step, the first echo_step zeroed."""
    x = rng.choice(2, size=length, p=[0.5, 0.5]).astype(np.int32)
    y = np.roll(x, echo_step)
    y[:echo_step] = 0
    return x, y


def generate_epoch(rng: np.random.Generator, params: TrainingParams) -> tuple[np.ndarray, np.ndarray]:
    """One epoch as the tutorial's generateData, then windowed: two [steps, batch, window] arrays."""
    x, y = generate_series(rng, params.total_series_length, params.echo_step)
    rows = params.batch_size
    cols = params.total_series_length // rows
    x = x[: rows * cols].reshape(rows, cols)
    y = y[: rows * cols].reshape(rows, cols)
    return to_windows(x, params), to_windows(y, params)


def to_windows(series: np.ndarray, params: TrainingParams) -> np.ndarray:
    """Cut [batch, columns] into [steps, batch, truncated_backprop_length], dropping the remainder."""
    width = params.truncated_backprop_length
    steps = params.steps_per_epoch
    windows = series[:, : steps * width].reshape(series.shape[0], steps, width)
    return np.ascontiguousarray(windows.transpose(1, 0, 2))
