"""Where a group of models stands, enough for a lost worker to resume the whole group exactly."""

import io
from dataclasses import dataclass

import numpy as np

from worker.engine.checkpoint import Checkpoint
from worker.engine.trial import Window


@dataclass
class GroupCheckpoint:
    """Each model's Checkpoint, in the order of the group's params, and the last window of each stopped model.

    The models still training share one position (epoch, done, step); a model that reached its target
    loss holds the position where it stopped, and its last window, which it will not draw again.
    """

    models: list[Checkpoint]
    windows: list[Window | None]

    def to_bytes(self) -> bytes:
        """Serialise as one .npz: every model's checkpoint bytes and the stopped models' windows."""
        arrays = {f"c{k}": np.frombuffer(c.to_bytes(), np.uint8) for k, c in enumerate(self.models)}
        for k, window in enumerate(self.windows):
            if window is not None:
                arrays |= {f"w{k}_{i}": part for i, part in enumerate(window)}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "GroupCheckpoint":
        """The group checkpoint that to_bytes wrote."""
        with np.load(io.BytesIO(data)) as npz:
            models = sum(name.startswith("c") for name in npz.files)
            checkpoints = [Checkpoint.from_bytes(npz[f"c{k}"].tobytes()) for k in range(models)]
            windows = [tuple(npz[f"w{k}_{i}"] for i in range(3)) if f"w{k}_0" in npz.files else None
                       for k in range(models)]
        return cls(checkpoints, windows)
