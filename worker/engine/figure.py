"""The tutorial's figure: the loss curve and five panels of the last window.

Most of a fresh matplotlib figure's time (about 0.7 s of this one's) goes to making its axes,
ticks and bars and laying them out. The figure is therefore made once per process and window
shape, and each render only moves its data and draws: a job's ten snapshots cost tens of
milliseconds each instead of seconds on the way to its end. What never changes (the bar panels'
axes) is drawn once and copied into each render.
"""

import io
import threading

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from worker.engine.kept import kept

PANELS = 5
TEMPLATES_KEPT = 4  # window shapes whose laid-out figure a process keeps (a few MB each)
_templates: dict[tuple[int, int], "_Template"] = {}  # kept across the process's jobs, each a thread of its own
_drawing = threading.Lock()  # an Agg figure is drawn by one thread at a time


class _Template:
    """The figure's artists for one window shape, laid out once."""

    def __init__(self, rows: int, width: int):
        # The object API, not pyplot: no global state, so figures can be drawn off the main thread.
        self.figure = Figure(figsize=(12, 7), dpi=80)
        self.canvas = FigureCanvasAgg(self.figure)
        self.loss_axes = self.figure.add_subplot(2, 3, 1)
        (self.line,) = self.loss_axes.plot(np.arange(2), [0.25, 0.75])  # labels as wide as a loss's, for the layout
        self.loss_axes.set_title("loss")
        self.loss_axes.set_xlabel("step")
        edges = np.arange(width + 1) - 0.5  # bars of width 1 centred on each bit, as the tutorial's plt.bar
        self.bars = []
        for row in range(rows):
            axes = self.figure.add_subplot(2, 3, row + 2)
            axes.axis((0, width, 0, 2))
            self.bars.append(
                [axes.stairs(np.zeros(width), edges, fill=True, color=c) for c in ("blue", "red", "green")]
            )
        self.figure.tight_layout()
        # Everything but the loss panel and the bars is the same in every render: drawn once, then copied.
        self.loss_axes.set_visible(False)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)
        self.loss_axes.set_visible(True)

    def render(self, losses: np.ndarray, series: list[tuple[np.ndarray, ...]]) -> bytes:
        """PNG of this figure holding losses and, per panel, its input, echo and prediction heights."""
        self.line.set_data(np.arange(len(losses)), losses)
        self.loss_axes.relim()
        self.loss_axes.autoscale_view()
        self.canvas.restore_region(self.background)
        self.figure.draw_artist(self.loss_axes)
        for patches, heights in zip(self.bars, series):
            for patch, values in zip(patches, heights):
                patch.set_data(values)
                self.figure.draw_artist(patch)
        image = Image.frombuffer("RGBA", self.canvas.get_width_height(), self.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="png", compress_level=1)  # the fastest level: a figure is ~60 KB
        return buffer.getvalue()


def render(losses: np.ndarray, x: np.ndarray, y: np.ndarray, probabilities: np.ndarray) -> bytes:
    """PNG of the loss and, per row of the window, input (blue), echo (red), prediction (green)."""
    rows, width = min(PANELS, x.shape[0]), x.shape[1]
    predicted = probabilities.argmax(-1)
    series: list[tuple[np.ndarray, ...]] = [(x[row], y[row] * 0.5, predicted[row] * 0.3) for row in range(rows)]
    with _drawing:
        template = kept(_templates, (rows, width), lambda: _Template(rows, width), TEMPLATES_KEPT)
        return template.render(np.asarray(losses, np.float64), series)
