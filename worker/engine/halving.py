"""Successive halving inside a group's compiled loop: at each rung every live model is scored on held-out
sequences (evaluate.py, all in one call) and the best 1/η go on; the others are pruned, and the survivors
are repacked into a smaller program rather than carried, masked, in the big one.

Program sizes are powers of two, so a worker compiles at most log2(group size) + 1 programs per shape
and keeps them for its next groups; a repack that would not shrink the program masks the pruned instead.
"""

import dataclasses

from contract.sweep import Halving
from worker.engine.evaluate import HeldOutScores


@dataclasses.dataclass
class RungReport:
    """What a rung decided: each model's scores (None for a model not live there) and those it pruned."""

    rung: int  # from 1
    epoch: int  # epochs trained
    scores: list[HeldOutScores | None]
    pruned: list[int]


def rung_of(halving: Halving, num_epochs: int, epochs: int) -> int | None:
    """The rung (from 1) that ends after `epochs`, if one does."""
    rungs = halving.rungs(num_epochs)
    return rungs.index(epochs) + 1 if epochs in rungs else None


def prune(halving: Halving, scores: dict[int, HeldOutScores]) -> list[int]:
    """The models (indexes) below the best 1/η by held-out echo accuracy, then loss (ties: the lower index goes on)."""
    ranked = sorted(scores, key=lambda k: (-scores[k].echo_accuracy, scores[k].loss, k))
    return sorted(ranked[halving.survivors(len(ranked)) :])


def program_size(live: int, current: int) -> int:
    """Slots of the program the live models train in next: the power of two at or above live, or current
    when that is no smaller (the pruned stay in it, masked)."""
    size = 1 << max(0, (live - 1).bit_length())
    return size if size < current else current


def score_dict(rung: int, epoch: int, evaluation: HeldOutScores) -> dict:
    """A rung's scores as a trial keeps them (and its checkpoint and job record hold them)."""
    return {"rung": rung, "epoch": epoch, **dataclasses.asdict(evaluation)}
