"""Request and response schemas of the API; the training parameters are the worker's."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from contract.job import Job, Status
from service import model_refs

# The documented limits (Settings.max_sequence_bits and max_sequences default to them): the
# routes answer 413 past them before validating, so the document states what is accepted.
MAX_SEQUENCE_BITS = 100_000
MAX_SEQUENCES = 1_000
# GET carries its sequence in the request line, which the HTTP server (granian) caps at 64 KiB.
MAX_QUERY_BITS = 65_000

Bits = Annotated[
    str,
    Field(pattern=r"^[01]+$", min_length=1, max_length=MAX_SEQUENCE_BITS, description="Bits, as a string of 0 and 1."),
]
QueryBits = Annotated[
    str,
    Field(
        pattern=r"^[01]+$",
        min_length=1,
        max_length=MAX_QUERY_BITS,
        description=f"Bits, as a string of 0 and 1; longer sequences (up to MAX_SEQUENCE_BITS, {MAX_SEQUENCE_BITS:,} by "
        "default) go by POST /predict.",
    ),
]
# What a 422 says instead of pydantic's "String should match pattern '…'".
PATTERN_MESSAGES = {
    r"^[01]+$": "must be bits: a string of 0 and 1",
    model_refs.PATTERN: model_refs.MESSAGE,
}
ModelRef = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=200,
        pattern=model_refs.PATTERN,
        description="A job id, an MLflow run id, models:/echo-rnn/VERSION or models:/echo-rnn@ALIAS; "
        "by default the champion (models:/echo-rnn@champion), which only moves to a better version.",
    ),
]


class JobListQuery(BaseModel):
    """Query of GET /jobs."""

    model_config = ConfigDict(extra="forbid")
    status: Status | None = None
    limit: int = Field(20, ge=1, le=100)
    cursor: int | None = Field(None, ge=0, description="next_cursor of the previous page")


class SweepListQuery(BaseModel):
    """Query of GET /sweeps."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=100)
    cursor: int | None = Field(None, ge=0, description="next_cursor of the previous page")


class PredictQuery(BaseModel):
    """Query of GET /predict."""

    model_config = ConfigDict(extra="forbid")
    sequence: QueryBits
    model: ModelRef = None


class PredictBody(BaseModel):
    """Body of POST /predict."""

    model_config = ConfigDict(extra="forbid")
    sequences: list[Bits] = Field(
        min_length=1, max_length=MAX_SEQUENCES, description="Bit strings, as for GET /predict."
    )
    model: ModelRef = None


class ModelOut(BaseModel):
    """The registered model version that answered."""

    name: str
    version: str
    uri: str
    run_id: str | None
    job_id: str | None = Field(
        description="The job that trained it; null when the caller may not see that job "
        "(another token's) or it is gone."
    )


class EchoResult(BaseModel):
    """The echo of one sequence."""

    sequence: str
    echo: str = Field(description="Predicted bits: the input delayed by echo_step.")
    probabilities: list[float] = Field(description="P(bit = 1) per position.")
    echo_step: int


class PredictOne(EchoResult):
    """Answer of GET /predict."""

    model: ModelOut


class PredictMany(BaseModel):
    """Answer of POST /predict."""

    model: ModelOut
    results: list[EchoResult]


class JobList(BaseModel):
    """A page of jobs."""

    jobs: list[Job]
    next_cursor: int | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class VersionMetrics(BaseModel):
    loss: float | None
    epoch_loss: float | None
    echo_accuracy: float | None
    eval_echo_accuracy: float | None = Field(description="Held-out echo accuracy, the champion gate's measure.")
    eval_loss: float | None


class ModelVersion(ModelOut):
    """A registered version with its final metrics."""

    aliases: list[str]
    champion: bool = Field(description="Whether GET /predict serves this version by default.")
    promoted: bool | None = Field(description="Whether the champion gate promoted it when its job ended.")
    promotion: str | None = Field(description="Why it was promoted or not.")
    created_at: str
    metrics: VersionMetrics


class ModelList(BaseModel):
    """A page of registered versions, newest first."""

    models: list[ModelVersion]
    next_cursor: int | None = Field(None, description="Pass as ?cursor= for the next page; null on the last.")


class ModelListQuery(BaseModel):
    """Query of GET /models."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(100, ge=1, le=100)
    cursor: int | None = Field(
        None, ge=1, le=2**31 - 1, description="next_cursor of the previous page: versions below this number"
    )


class BackfillQueued(BaseModel):
    """The worker task that adds the served form to older versions."""

    task_id: str
    detail: str


class FieldError(BaseModel):
    field: str
    message: str
    location: str


class ProblemDoc(BaseModel):
    """An error (RFC 9457 problem details)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: Literal["ready", "degraded"] = Field(
        description="degraded: Redis is past REDIS_MEMORY_WARN_FRACTION of its maxmemory (at it, /readyz is a 503)"
    )
    redis: str
    mlflow: str
    redis_memory: float | None = Field(None, description="Redis's used memory over its maxmemory; null without one.")
