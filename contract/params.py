"""The training-parameter schema, shared by the API and the engine (no TensorFlow, no Celery)."""

import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

# Bounds keep one job inside a worker's memory and time: an epoch holds its series in memory
# and MLflow receives one loss point per window.
MAX_SERIES = 5_000_000
MAX_TOTAL_STEPS = 2_000_000
MAX_EPOCH_BITS = 500_000_000


def _invalid(field: str, message: str) -> PydanticCustomError:
    """An error about a combination of fields, attributed to the field to change."""
    return PydanticCustomError("invalid_combination", message.replace("{", "{{").replace("}", "}}"), {"field": field})


class TrainingParams(BaseModel):
    """Parameters of one training job; the defaults are the tutorial's."""

    # Strict: a JSON body's "3" or true is not a number of epochs.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    num_epochs: int = Field(100, ge=1, le=10_000, description="Epochs; each draws a fresh series.")
    total_series_length: int = Field(50_000, ge=2, le=MAX_SERIES, description="Random bits per epoch.")
    truncated_backprop_length: int = Field(
        15, ge=1, le=64, description="Window length: steps unrolled per training step."
    )
    state_size: int = Field(4, ge=1, le=256, description="Number of tanh units.")
    num_classes: int = Field(2, ge=2, le=16, description="Output classes (bits use 0 and 1).")
    echo_step: int = Field(3, ge=0, le=1_000, description="How many steps the echo lags.")
    batch_size: int = Field(5, ge=1, le=1_024, description="Rows the series is reshaped into.")
    learning_rate: float = Field(0.3, gt=0, le=10, allow_inf_nan=False, description="Adagrad learning rate.")
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Random seed; same seed, same loss curve on the CPU."
    )
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="Where to train.")
    init: Literal["tutorial", "glorot"] = Field(
        "tutorial",
        description="Initial weights: the tutorial's (W, W2 uniform in [0, 1): some seeds sit at ln 2 "
        "for epochs), or Glorot-uniform (learns the echo from almost every seed).",
    )
    target_loss: float | None = Field(
        None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="Stop early, succeeded, once an epoch's mean loss is at or below this; none: every epoch.",
    )
    time_limit_s: int | None = Field(
        None,
        ge=1,
        le=7 * 24 * 3600,
        description="Fail the job past this many seconds of running; workers cap it (6 h by default).",
    )

    @model_validator(mode="after")
    def _fits(self) -> "TrainingParams":
        window = self.batch_size * self.truncated_backprop_length
        if self.total_series_length < window:
            raise _invalid(
                "total_series_length",
                f"total_series_length ({self.total_series_length}) is too short for one window: "
                f"it needs at least batch_size × truncated_backprop_length = {window} bits",
            )
        if self.echo_step >= self.total_series_length:
            raise _invalid(
                "echo_step",
                f"echo_step ({self.echo_step}) must be smaller than total_series_length ({self.total_series_length})",
            )
        if self.num_epochs * self.steps_per_epoch > MAX_TOTAL_STEPS:
            raise _invalid(
                "num_epochs",
                f"the job is too long: num_epochs × steps per epoch = "
                f"{self.num_epochs * self.steps_per_epoch} exceeds {MAX_TOTAL_STEPS}",
            )
        if self.num_epochs * self.total_series_length > MAX_EPOCH_BITS:
            raise _invalid(
                "num_epochs",
                f"the job is too long: num_epochs × total_series_length exceeds {MAX_EPOCH_BITS}",
            )
        return self

    @property
    def steps_per_epoch(self) -> int:
        """Windows per epoch, as the tutorial's num_batches."""
        return self.total_series_length // self.batch_size // self.truncated_backprop_length

    @property
    def total_steps(self) -> int:
        """Training steps of the whole job."""
        return self.num_epochs * self.steps_per_epoch

    def resolved(self) -> "TrainingParams":
        """These parameters with a concrete seed, so a job can be replayed."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbelow(2**32)})
