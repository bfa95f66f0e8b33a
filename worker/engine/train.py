"""Training a job: the group of one model, with progress, cancellation, checkpoints and evaluation."""

from collections.abc import Callable

from contract.params import TrainingParams
from worker.engine.checkpoint import Checkpoint
from worker.engine.group import GroupCheckpoint, train_group
from worker.engine.results import StepReport, TrainingResult


def train_model(
    params: TrainingParams,
    on_progress: Callable[[StepReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: Checkpoint | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    checkpoint_every_s: float = 2.0,
) -> TrainingResult:
    """Train the echo RNN (from a checkpoint if given); reports progress, checks for
    cancellation and offers checkpoints at epoch ends and at least every 2 s."""

    def report(reports: list[StepReport | None]) -> None:
        if on_progress is not None and reports[0] is not None:  # a group of one reports only while its model trains
            on_progress(reports[0])

    def offer(group: GroupCheckpoint) -> None:
        if on_checkpoint is not None:
            on_checkpoint(group.models[0])

    return train_group(
        [params],
        report if on_progress else None,
        should_stop,
        None if resume is None else GroupCheckpoint([resume], [None]),
        offer if on_checkpoint else None,
        checkpoint_every_s,
    )[0]
