"""Held-out evaluation of a trained network: echo accuracy and loss on fresh sequences of several lengths."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from contract.params import TrainingParams

LENGTHS = (16, 100, 1000)
ROWS = 64


@dataclass
class HeldOutScores:
    """Echo accuracy (positions ≥ echo_step) and mean cross-entropy there, overall and per length."""

    echo_accuracy: float
    loss: float
    by_length: dict[str, dict[str, float]] = field(default_factory=dict)


def held_out(params: TrainingParams) -> tuple[np.ndarray, list[int]]:
    """The held-out bits [rows, longest length] (ROWS rows per length) from a generator apart from training's, and
    the lengths, each at least echo_step + 1: a sequence of L bits is the first L positions of its rows."""
    assert params.seed is not None, "evaluated parameters are resolved (a concrete seed)"
    rng = np.random.default_rng([params.seed, 2])
    lengths = sorted({max(n, params.echo_step + 1) for n in LENGTHS})
    x = np.zeros((ROWS * len(lengths), lengths[-1]), np.int32)
    for g, length in enumerate(lengths):
        x[g * ROWS : (g + 1) * ROWS, :length] = rng.integers(0, 2, size=(ROWS, length), dtype=np.int32)
    return x, lengths


def score(probs: np.ndarray, x: np.ndarray, lengths: list[int], params: TrainingParams) -> HeldOutScores:
    """The evaluation of a model's probabilities [rows, length, classes] on held_out's bits."""
    return score_parts([probs[g * ROWS : (g + 1) * ROWS] for g in range(len(lengths))], x, lengths, params)


def score_parts(parts: list[np.ndarray], x: np.ndarray, lengths: list[int], params: TrainingParams) -> HeldOutScores:
    """score, given each length's rows apart: parts[g] holds the probabilities [ROWS, ≥ lengths[g], classes]."""
    right = total = 0
    loss_sum = 0.0
    by_length: dict[str, dict[str, float]] = {}
    for g, (length, part) in enumerate(zip(lengths, parts)):
        scored = part[:, params.echo_step : length, :]
        target = x[g * ROWS : (g + 1) * ROWS, : length - params.echo_step]
        picked = np.take_along_axis(scored, target[..., None], axis=-1)[..., 0]
        losses = -np.log(np.clip(picked, 1e-7, 1.0))
        hits = scored.argmax(-1) == target
        by_length[str(length)] = {"echo_accuracy": float(hits.mean()), "loss": float(losses.mean())}
        right, total, loss_sum = right + int(hits.sum()), total + hits.size, loss_sum + float(losses.sum())
    return HeldOutScores(echo_accuracy=right / total, loss=loss_sum / total, by_length=by_length)


def evaluate(forward: Callable[[Any], Any], params: TrainingParams) -> HeldOutScores:
    """Run forward (bits [rows, length] → probabilities [rows, length, classes]) from zero state on held_out's bits.

    One call for every length (one XLA compilation at the job's end): from a zero state a position's
    output depends on nothing after it.
    """
    x, lengths = held_out(params)
    return score(forward(tf.constant(x)).numpy(), x, lengths, params)


def evaluate_stacked(
    probabilities: Callable[[np.ndarray], np.ndarray], params_list: list[TrainingParams | None]
) -> list[HeldOutScores | None]:
    """The same evaluation of K models, a call per length: probabilities maps bits [K, rows, length] to [K, rows,
    length, classes]; a model whose params are None is given zeros and not scored.

    Each length's rows run only as far as the longest of the models' lengths there (a third of the steps of
    running every row to the longest length): from a zero state a position's output depends on nothing after it.
    """
    held = [held_out(p) if p is not None else None for p in params_list]
    parts = []
    for g in range(max(len(h[1]) for h in held if h is not None)):  # fewer lengths: an echo_step past 16 or 100
        there = [(k, h) for k, h in enumerate(held) if h is not None and len(h[1]) > g]
        x = np.zeros((len(held), ROWS, max(h[1][g] for _, h in there)), np.int32)
        for k, h in there:
            x[k, :, : h[1][g]] = h[0][g * ROWS : (g + 1) * ROWS, : h[1][g]]
        parts.append(probabilities(x))
    return [
        score_parts([part[k] for part in parts[: len(h[1])]], h[0], h[1], p)
        if h is not None and p is not None
        else None
        for k, (h, p) in enumerate(zip(held, params_list))
    ]
