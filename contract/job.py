"""The job record as the API shows it, and the state machine of its status."""

from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATUSES: tuple[str, ...] = get_args(Status)
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

# Every status change a job may make; JobStore.move refuses any other. running → running is a
# worker resuming the job after the one running it was lost; queued → failed, a queue that
# did not take the job.
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled", "failed"}),
    "running": frozenset({"running", "succeeded", "failed", "cancelled"}),
}


def sources(status: str) -> frozenset[str]:
    """The statuses from which a job may move to status."""
    return frozenset(old for old, new in TRANSITIONS.items() if status in new)


class JobProgress(BaseModel):
    epoch: int = 0
    epochs: int
    step: int = 0
    steps: int
    fraction: float = 0.0


class Metrics(BaseModel):
    loss: float | None = None
    epoch_loss: float | None = None
    echo_accuracy: float | None = None


class MlflowLink(BaseModel):
    experiment_id: str
    run_id: str
    url: str


class SavedModel(BaseModel):
    uri: str
    name: str
    version: str
    promoted: bool | None = Field(
        None, description="Whether this version became the champion GET /predict serves by default."
    )
    promotion: str | None = Field(None, description="Why it was promoted or not.")


class LengthScore(BaseModel):
    echo_accuracy: float
    loss: float


class Evaluation(BaseModel):
    """Held-out evaluation at the end of the job: fresh sequences from a seed apart from training's."""

    echo_accuracy: float = Field(description="Share of echoed bits right, at positions ≥ echo_step.")
    loss: float = Field(description="Mean cross-entropy at those positions.")
    by_length: dict[str, LengthScore] = Field(default_factory=dict, description="The same per sequence length.")


class RungScore(BaseModel):
    """A trial's held-out scores at a rung of a halving sweep (the same evaluation as a job's end)."""

    rung: int = Field(description="The rung, from 1.")
    epoch: int = Field(description="Epochs trained at that rung.")
    echo_accuracy: float
    loss: float


class WorkerInfo(BaseModel):
    host: str
    pid: int


class Resume(BaseModel):
    at: str
    step: int = Field(description="The training step it resumed from.")


class TrialOf(BaseModel):
    """Where a job stands in a sweep."""

    sweep_id: str
    trial: int = Field(description="The trial's index in the sweep.")
    group: int = Field(description="The group of trials it trains with, as one program.")


class Job(BaseModel):
    """A training job as the API shows it."""

    id: str
    status: Status
    params: dict[str, Any]
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    progress: JobProgress
    metrics: Metrics = Field(default_factory=Metrics)
    error: str | None = None
    device: str | None = None
    mlflow: MlflowLink | None = None
    model: SavedModel | None = None
    evaluation: Evaluation | None = None
    stopped_early: int | None = Field(
        None, description="The epoch whose mean loss reached target_loss, ending the job early."
    )
    owner: str | None = Field(
        None, description="The client that submitted it (its token's fingerprint), when tokens are on."
    )
    cancel_requested: bool = False
    phase: Literal["starting", "training", "saving"] | None = Field(
        None,
        description="While running: starting (its MLflow run, compiling), training, or saving its model "
        "(from then on it can no longer be cancelled).",
    )
    attempts: int = Field(0, description="How many times a worker started this job.")
    worker: WorkerInfo | None = Field(None, description="The process running (or that last ran) the job.")
    resumed: list[Resume] = Field(
        default_factory=list, description="Each time the job resumed from a checkpoint after losing its worker."
    )
    sweep: TrialOf | None = Field(None, description="The sweep this job is a trial of, if any.")
    rungs: list[RungScore] = Field(
        default_factory=list, description="A halving sweep's trial: its scores at each rung it reached."
    )
    pruned: int | None = Field(
        None,
        description="The rung at which a halving sweep stopped this trial: it ends succeeded "
        "with that rung's held-out scores as its evaluation.",
    )
