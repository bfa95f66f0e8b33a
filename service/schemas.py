"""Request schemas of the API, besides the training parameters that the worker owns."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Bits = Annotated[str, Field(pattern=r"^[01]+$", min_length=1, description="Bits, as a string of 0 and 1.")]
ModelRef = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=200,
        description="A job id, an MLflow run id, models:/echo-rnn/VERSION or models:/echo-rnn@ALIAS; "
        "by default the newest registered version.",
    ),
]


class JobListQuery(BaseModel):
    """Query of GET /jobs."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None
    limit: int = Field(20, ge=1, le=100)
    cursor: int | None = Field(None, ge=0, description="next_cursor of the previous page")


class PredictQuery(BaseModel):
    """Query of GET /predict."""

    model_config = ConfigDict(extra="forbid")
    sequence: Bits
    model: ModelRef = None


class PredictBody(BaseModel):
    """Body of POST /predict."""

    model_config = ConfigDict(extra="forbid")
    sequences: list[Bits] = Field(min_length=1, description="Bit strings, as for GET /predict.")
    model: ModelRef = None
