"""The tutorial's figure: the loss curve and five panels of the last window."""

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def render(losses: np.ndarray, x: np.ndarray, y: np.ndarray, probabilities: np.ndarray) -> bytes:
    """PNG of the loss and, per row of the window, input (blue), echo (red), prediction (green)."""
    # The object API, not pyplot: no global state, so figures can be drawn off the main thread.
    fig = Figure(figsize=(12, 7))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(2, 3, 1)
    ax.plot(losses)
    ax.set_title("loss")
    ax.set_xlabel("step")
    width = x.shape[1]
    predicted = probabilities.argmax(-1)
    for row in range(min(5, x.shape[0])):
        ax = fig.add_subplot(2, 3, row + 2)
        ax.axis([0, width, 0, 2])
        left = np.arange(width)
        ax.bar(left, x[row], width=1, color="blue")
        ax.bar(left, y[row] * 0.5, width=1, color="red")
        ax.bar(left, predicted[row] * 0.3, width=1, color="green")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
