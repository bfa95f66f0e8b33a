"""Job records as the attempt path's tests need them written, shared by their modules."""

from typing import Any

from contract.job_store import JobStore


def end_trial(
    store: JobStore, job_id: str, status: str, accuracy: float | None = None, pruned_at: int | None = None
) -> None:
    """A trial's record as its attempt's end leaves it (a pruned one: its rungs, up to the one that stopped it)."""
    store.move(job_id, "running")
    fields: dict[str, Any] = {}
    if accuracy is not None:
        fields["evaluation"] = {"echo_accuracy": accuracy, "loss": 1 - accuracy}
    if pruned_at is not None:
        fields["pruned"] = pruned_at
        fields["rungs"] = [
            {"rung": r, "epoch": r, "echo_accuracy": accuracy, "loss": 1 - (accuracy or 0)}
            for r in range(1, pruned_at + 1)
        ]
    assert store.move(job_id, status, **fields) == "running"
