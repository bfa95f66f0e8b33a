"""Where a training run stands, enough to resume it exactly: weights, optimizer, position, random state."""

import io
import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Checkpoint:
    """A resumable position: the next window to train is window `done` of epoch `epoch` (0-based)."""

    epoch: int
    done: int
    step: int  # global steps trained so far
    rng_state: dict  # the data generator's state at the start of `epoch`, to draw that epoch again
    eval_rng_state: dict
    state: np.ndarray  # the RNN state carried into window `done`
    weights: dict[str, np.ndarray]
    accumulators: dict[str, np.ndarray]
    losses: np.ndarray  # every step's loss so far
    epoch_losses: list[float] = field(default_factory=list)
    echo_accuracy: list[float] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """Serialise as one .npz (arrays) with the scalars as JSON inside."""
        meta = {
            "epoch": self.epoch, "done": self.done, "step": self.step, "rng_state": self.rng_state,
            "eval_rng_state": self.eval_rng_state, "epoch_losses": self.epoch_losses,
            "echo_accuracy": self.echo_accuracy,
        }
        arrays = {"state": self.state, "losses": self.losses}
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
