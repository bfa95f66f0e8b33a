"""A group checkpoint as a store keeps it: a head and the histories in appended pieces.

The head is everything but the histories (each step's loss, each epoch's loss and echo accuracy): its
size does not grow with the steps trained. Each save appends only the history written since the
previous save, in pieces of a bounded size; pieces laid over each other in the order written rebuild
the histories exactly, and a history some piece is missing from is refused rather than guessed.
"""

import dataclasses
import io
from dataclasses import dataclass

import numpy as np

from worker.engine.checkpoint import GroupCheckpoint


@dataclass(frozen=True)
class Written:
    """How much of one model's histories a store already holds: its first `steps` losses, first `epochs` results."""

    steps: int = 0
    epochs: int = 0


@dataclass
class Span:
    """Consecutive values of one model's history: losses (float32) or epoch results (float64 pairs)."""

    model: int
    epochs: bool
    start: int
    values: np.ndarray


def written(group: GroupCheckpoint) -> list[Written]:
    """What a store holds of each model once group is saved."""
    return [Written(c.step, len(c.epoch_losses)) for c in group.models]


def head_bytes(group: GroupCheckpoint) -> bytes:
    """The group without its histories, and how many epochs each model has trained."""
    bare = [
        dataclasses.replace(c, losses=np.zeros(0, np.float32), epoch_losses=[], echo_accuracy=[]) for c in group.models
    ]
    buffer = io.BytesIO()
    np.savez(
        buffer,
        group=np.frombuffer(dataclasses.replace(group, models=bare).to_bytes(), np.uint8),  # a halving schedule too
        epochs=np.array([len(c.epoch_losses) for c in group.models], np.int64),
    )
    return buffer.getvalue()


def history_pieces(group: GroupCheckpoint, since: list[Written], most_bytes: int) -> list[bytes]:
    """What group's histories hold past since, in pieces of at most most_bytes of values (at least one piece)."""
    spans: list[Span] = []
    for k, (c, old) in enumerate(zip(group.models, since)):
        spans.append(Span(k, False, old.steps, np.asarray(c.losses[old.steps : c.step], np.float32)))
        results = np.column_stack(
            [
                np.asarray(c.epoch_losses[old.epochs :], np.float64),
                np.asarray(c.echo_accuracy[old.epochs :], np.float64),
            ]
        )
        spans.append(Span(k, True, old.epochs, results))
    pieces: list[list[Span]] = [[]]
    room = most_bytes
    for span in spans:
        row = span.values[:1].nbytes or 1
        start, values = span.start, span.values
        while len(values):
            if room < row:
                pieces.append([])
                room = most_bytes
            take = values[: room // row]
            pieces[-1].append(Span(span.model, span.epochs, start, take))
            start, values, room = start + len(take), values[len(take) :], room - take.nbytes
    return [_piece_bytes(p) for p in pieces]


def _piece_bytes(spans: list[Span]) -> bytes:
    # index: a row per span: model, 1 for epoch results (0 for losses), first position, count
    index = np.array([(s.model, s.epochs, s.start, len(s.values)) for s in spans], np.int64).reshape(-1, 4)
    losses = [s.values for s in spans if not s.epochs] or [np.zeros(0, np.float32)]
    results = [s.values for s in spans if s.epochs] or [np.zeros((0, 2), np.float64)]
    buffer = io.BytesIO()
    np.savez(buffer, index=index, losses=np.concatenate(losses), results=np.concatenate(results))
    return buffer.getvalue()


def from_parts(head: bytes, pieces: list[bytes]) -> GroupCheckpoint | None:
    """The group checkpoint a head and its history pieces (in the order written) hold; None when a piece is missing.

    A head written whole (before histories were kept apart) is the whole checkpoint.
    """
    with np.load(io.BytesIO(head)) as npz:
        if "group" not in npz.files:
            return GroupCheckpoint.from_bytes(head)
        group, epochs = GroupCheckpoint.from_bytes(npz["group"].tobytes()), npz["epochs"].tolist()
    histories = [(np.zeros(c.step, np.float32), np.zeros((n, 2), np.float64)) for c, n in zip(group.models, epochs)]
    covered: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for data in pieces:
        with np.load(io.BytesIO(data)) as npz:
            index, values = npz["index"].tolist(), (npz["losses"], npz["results"])
        at = [0, 0]
        for model, kind, start, count in index:
            chunk = values[kind][at[kind] : at[kind] + count]
            at[kind] += count
            target = histories[model][kind]
            end = min(start + count, len(target))  # past the head's position: a later save's, not this head's
            if end > start:
                target[start:end] = chunk[: end - start]
                covered.setdefault((model, kind), []).append((start, end))
    for k, history in enumerate(histories):
        if not all(_covers(covered.get((k, kind), []), len(history[kind])) for kind in (0, 1)):
            return None
    for c, (losses, results) in zip(group.models, histories):
        c.losses, c.epoch_losses, c.echo_accuracy = losses, results[:, 0].tolist(), results[:, 1].tolist()
    return group


def _covers(spans: list[tuple[int, int]], length: int) -> bool:
    reached = 0
    for start, end in sorted(spans):
        if start > reached:
            return False
        reached = max(reached, end)
    return reached >= length
