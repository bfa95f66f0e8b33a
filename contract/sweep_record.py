"""A sweep as the API shows it: its trials, their progress and the leaderboard."""

import math
from typing import Any

from pydantic import BaseModel, Field

from contract.job import Evaluation, Job, MlflowLink, RungScore, SavedModel, Status


class Trial(BaseModel):
    """One configuration of the sweep, trained as a job of its own (GET /jobs/{job_id})."""

    trial: int
    job_id: str
    group: int
    values: dict[str, Any] = Field(description="The searched parameters' values of this trial.")
    status: Status
    fraction: float = 0.0
    epoch: int = 0
    loss: float | None = None
    evaluation: Evaluation | None = None
    stopped_early: int | None = None
    rung: int = Field(0, description="A halving sweep's trial: the last rung it reached (0: none yet).")
    pruned: bool = Field(False, description="Whether the halving scheduler stopped it at that rung.")
    rungs: list[RungScore] = Field(default_factory=list, description="Its held-out scores at each rung.")
    error: str | None = None


class Ranked(BaseModel):
    """A place on the leaderboard: held-out echo accuracy first, then held-out loss."""

    rank: int
    trial: int
    job_id: str
    values: dict[str, Any]
    echo_accuracy: float
    loss: float
    rung: int = 0
    pruned: bool = False


class SweepProgress(BaseModel):
    trials: int = Field(description="Trials made so far (a tpe search makes them a batch at a time).")
    planned: int = Field(
        0, description="Trials the sweep makes in all: trials, or more while a tpe search has batches left to ask."
    )
    finished: int = 0
    succeeded: int = 0
    fraction: float = 0.0


class Best(BaseModel):
    trial: int
    job_id: str
    model: SavedModel | None = Field(
        None, description="Its registered version (only the best trial's model is registered)."
    )


class SweepHead(BaseModel):
    """What a sweep and its line in a listing both say first."""

    id: str
    name: str | None = None
    status: Status
    owner: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    request: dict[str, Any] = Field(description="The request as validated (params and grid or random).")


class Sweep(SweepHead):
    """A sweep: many trials from one request, trained in groups of the same shapes."""

    groups: list[list[int]] = Field(
        description="The trials of each group, trained together as one program (a tpe search's so far)."
    )
    batches: int = Field(1, description="Batches made so far: a tpe search's, each asked once the one before ended.")
    progress: SweepProgress
    trials: list[Trial]
    leaderboard: list[Ranked] = Field(default_factory=list, description="Finished trials, best first.")
    best: Best | None = None
    mlflow: MlflowLink | None = Field(None, description="The parent run; each trial is a child run of it.")
    cancel_requested: bool = False
    error: str | None = None


class SweepSummary(SweepHead):
    """A sweep as a listing shows it: its progress and leader, without a line per trial (GET /sweeps/{id} has them)."""

    group_count: int = Field(description="How many groups its trials are trained in.")
    progress: SweepProgress
    leader: Ranked | None = Field(None, description="The leaderboard's first place, if a trial has succeeded.")
    best: Best | None = None
    mlflow: MlflowLink | None = Field(None, description="The parent run; each trial is a child run of it.")
    cancel_requested: bool = False
    error: str | None = None


class SweepList(BaseModel):
    """A page of sweeps, newest first."""

    sweeps: list[SweepSummary]
    next_cursor: int | None = Field(None, description="Pass as ?cursor= for the next page; null on the last.")


def trial_of(job: Job, values: dict[str, Any]) -> Trial:
    """A trial's line from its job record."""
    assert job.sweep is not None, f"job {job.id} is not a sweep's trial"
    return Trial(
        trial=job.sweep.trial,
        job_id=job.id,
        group=job.sweep.group,
        values=values,
        status=job.status,
        fraction=job.progress.fraction,
        epoch=job.progress.epoch,
        loss=job.metrics.loss,
        evaluation=job.evaluation,
        stopped_early=job.stopped_early,
        rung=len(job.rungs),
        pruned=job.pruned is not None,
        rungs=job.rungs,
        error=job.error,
    )


def rank_key(pruned: int | None, echo_accuracy: float, loss: float, trial: int) -> tuple:
    """Where a trial ranks: a pruned trial below every trial that went further, then held-out echo accuracy
    (highest first), held-out loss (lowest first)."""
    return (-(pruned if pruned is not None else math.inf), -echo_accuracy, loss, trial)


def leaderboard(trials: list[Trial]) -> list[Ranked]:
    """Succeeded trials, best first (rank_key)."""
    done = sorted(
        ((t, e) for t in trials if t.status == "succeeded" and (e := t.evaluation)),
        key=lambda te: rank_key(te[0].rung if te[0].pruned else None, te[1].echo_accuracy, te[1].loss, te[0].trial),
    )
    return [
        Ranked(
            rank=i + 1,
            trial=t.trial,
            job_id=t.job_id,
            values=t.values,
            echo_accuracy=e.echo_accuracy,
            loss=e.loss,
            rung=t.rung,
            pruned=t.pruned,
        )
        for i, (t, e) in enumerate(done)
    ]
