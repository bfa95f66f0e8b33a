"""The tutorial's figure as PNG bytes."""

import io

import numpy as np
import pytest
from matplotlib.image import imread

from worker.engine.figure import render

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode(png: bytes) -> np.ndarray:
    assert png[:8] == PNG_MAGIC
    return imread(io.BytesIO(png), format="png")


def test_render_the_trained_models_last_window(trained):
    x, y, probs = trained.last_window
    assert x.shape[0] == 5
    image = decode(render(trained.losses, x, y, probs))
    assert image.shape[:2] == (560, 960)  # 12 × 7 inches at 80 dpi
    assert image[..., :3].std() > 0.05  # something was drawn


@pytest.mark.parametrize("rows", [1, 2, 4, 8])
def test_render_any_batch_size(rows):
    rng = np.random.default_rng(rows)
    x = rng.integers(0, 2, (rows, 15))
    y = np.roll(x, 3, axis=1)
    probs = rng.dirichlet([1, 1], size=(rows, 15))
    decode(render(rng.random(100), x, y, probs))


def test_render_a_single_loss_point():
    x = np.ones((5, 15), np.int32)
    decode(render(np.array([0.7]), x, x, np.full((5, 15, 2), 0.5)))


def test_a_kept_figure_draws_each_render_from_its_own_data_only():
    """The figure is laid out once and reused: a render must not show anything of the one before it."""
    import threading

    rng = np.random.default_rng(3)
    windows = [
        (rng.integers(0, 2, (5, 15)), rng.integers(0, 2, (5, 15)), rng.dirichlet([1, 1], size=(5, 15)))
        for _ in range(2)
    ]
    first = render(rng.random(500), *windows[0])
    losses = rng.random(80_000)
    second = render(losses, *windows[1])
    assert decode(first).shape == decode(second).shape and not np.array_equal(decode(first), decode(second))
    again: list[bytes] = []
    thread = threading.Thread(target=lambda: again.append(render(losses, *windows[1])))  # as a job's figure thread
    thread.start()
    thread.join()
    assert np.array_equal(decode(again[0]), decode(second))
    render(np.array([0.7]), np.ones((2, 9), np.int32), np.ones((2, 9), np.int32), np.full((2, 9, 2), 0.5))
    assert np.array_equal(decode(render(losses, *windows[1])), decode(second))
