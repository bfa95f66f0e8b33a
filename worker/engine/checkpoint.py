"""Where training stands, enough to resume it exactly: each model's weights, optimizer, position and random
state (Checkpoint), and a group's models together (GroupCheckpoint, what a task's attempt saves)."""

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Window = tuple[np.ndarray, np.ndarray, np.ndarray]  # x, y, probabilities


@dataclass
class Checkpoint:
    """A resumable position: the next window to train is window `done` of epoch `epoch` (0-based)."""

    epoch: int
    done: int
    step: int  # global steps trained so far
    rng_state: Mapping[str, Any]  # the data generator's state at the start of `epoch`, to draw that epoch again
    eval_rng_state: Mapping[str, Any]
    state: np.ndarray  # the RNN state carried into window `done`
    weights: dict[str, np.ndarray]
    accumulators: dict[str, np.ndarray]
    losses: np.ndarray  # every step's loss so far
    epoch_losses: list[float] = field(default_factory=list)
    echo_accuracy: list[float] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """Serialise as one .npz (arrays) with the scalars as JSON inside."""
        meta = {
            "epoch": self.epoch,
            "done": self.done,
            "step": self.step,
            "rng_state": self.rng_state,
            "eval_rng_state": self.eval_rng_state,
            "epoch_losses": self.epoch_losses,
            "echo_accuracy": self.echo_accuracy,
        }
        arrays: dict[str, Any] = {"state": self.state, "losses": self.losses}  # Any: savez's **kwds type
        arrays |= {f"w_{k}": v for k, v in self.weights.items()}
        arrays |= {f"a_{k}": v for k, v in self.accumulators.items()}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Checkpoint":
        """The checkpoint that to_bytes wrote."""
        with np.load(io.BytesIO(data)) as npz:
            meta = json.loads(npz["meta"].tobytes())
            weights = {k[2:]: npz[k] for k in npz.files if k.startswith("w_")}
            accumulators = {k[2:]: npz[k] for k in npz.files if k.startswith("a_")}
            return cls(state=npz["state"], losses=npz["losses"], weights=weights, accumulators=accumulators, **meta)


@dataclass
class GroupCheckpoint:
    """Each model's Checkpoint, in the order of the group's params, and the last window of each stopped model.

    The models still training share one position (epoch, done, step); a model that reached its target
    loss holds the position where it stopped, and its last window, which it will not draw again.
    """

    models: list[Checkpoint]
    windows: list[Window | None]
    # A halving group's schedule (worker.engine.halving): each model's rung scores and pruned rung, and the
    # program's slots (which model trains in which), so a resumed group goes on with the same survivors.
    halving: dict | None = None

    def to_bytes(self) -> bytes:
        """Serialise as one .npz: every model's checkpoint bytes and the stopped models' windows."""
        arrays: dict[str, Any] = {f"c{k}": np.frombuffer(c.to_bytes(), np.uint8) for k, c in enumerate(self.models)}
        for k, window in enumerate(self.windows):
            if window is not None:
                arrays |= {f"w{k}_{i}": part for i, part in enumerate(window)}
        if self.halving is not None:
            arrays["halving"] = np.frombuffer(json.dumps(self.halving).encode(), np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "GroupCheckpoint":
        """The group checkpoint that to_bytes wrote."""
        with np.load(io.BytesIO(data)) as npz:
            models = sum(name.startswith("c") for name in npz.files)
            checkpoints = [Checkpoint.from_bytes(npz[f"c{k}"].tobytes()) for k in range(models)]
            windows = [
                tuple(npz[f"w{k}_{i}"] for i in range(3)) if f"w{k}_0" in npz.files else None for k in range(models)
            ]
            halving = json.loads(npz["halving"].tobytes()) if "halving" in npz.files else None
        return cls(checkpoints, windows, halving)
