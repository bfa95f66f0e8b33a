"""A sweep: many trials from one request, a grid or a random search over training parameters."""

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from contract.params import TrainingParams
from contract.sampling import draw, tpe_batch
from contract.sweep_edges import edges

MAX_TRIALS = 256  # a worker trains a group as one program: this bounds a sweep's memory and records
TPE_BATCH = 8  # a tpe search's trials per batch unless the request says: its random start, then each step of TPE
# Trials that agree on these train together, as one vectorized program (the engine's group key).
SHAPE_FIELDS = (
    "state_size",
    "num_classes",
    "batch_size",
    "truncated_backprop_length",
    "total_series_length",
    "num_epochs",
)
SEARCHABLE = tuple(n for n in TrainingParams.model_fields if n not in ("device", "time_limit_s"))
INT_FIELDS = frozenset(n for n in SEARCHABLE if TrainingParams.model_fields[n].annotation in (int, int | None))
Value = int | float | str | None


def _error(location: str, message: str) -> PydanticCustomError:
    # Braces around anything but a context key are left as they are by pydantic's message formatting.
    return PydanticCustomError("invalid_sweep", message, {"field": location})


class Range(BaseModel):
    """Values drawn uniformly between low and high (log-uniformly with log); integers for integer parameters."""

    model_config = ConfigDict(extra="forbid", strict=True)
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: bool = Field(False, description="Draw uniformly in log space (both bounds > 0).")

    def problem(self, integer: bool = False) -> str | None:
        """What is wrong with the bounds, if anything (checked by the request, which names the parameter)."""
        if self.low > self.high:
            return f"high ({self.high}) is below low ({self.low})"
        if self.log and self.low <= 0:
            return "a log range needs low > 0"
        if integer and math.ceil(self.low) > math.floor(self.high):
            return f"no integer lies between {self.low} and {self.high}"
        return None


class Choice(BaseModel):
    """One of these values, each as likely."""

    model_config = ConfigDict(extra="forbid", strict=True)
    values: list[Value] = Field(min_length=1, max_length=MAX_TRIALS)


class RandomSearch(BaseModel):
    """trials configurations drawn from space with seed by one of Optuna's samplers: the same request, the same
    configurations."""

    model_config = ConfigDict(extra="forbid", strict=True)
    trials: int = Field(ge=1, le=MAX_TRIALS, description="How many configurations to draw.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the draws.")
    space: dict[str, Range | Choice] = Field(min_length=1, description="Per parameter, a range or a choice.")
    sampler: Literal["random", "qmc", "tpe"] = Field(
        "random",
        description="Optuna's sampler: random (independent uniform draws), qmc (a scrambled Sobol "
        "sequence, which covers the ranges more evenly; choices drawn independently) or tpe (Tree-structured "
        "Parzen Estimator: drawn a batch at a time, each batch from the held-out loss of the trials before it).",
    )
    batch: int | None = Field(
        None,
        ge=1,
        le=MAX_TRIALS,
        description=f"tpe only: trials per batch, asked together and trained together (a group per shape, of at "
        f"most SWEEP_GROUP_SIZE); the first "
        f"batch is drawn at random, each next one by TPE once the batch before has ended. Default "
        f"{TPE_BATCH} (at most trials).",
    )

    def batch_size(self) -> int:
        """A tpe search's trials per batch."""
        return min(self.batch or TPE_BATCH, self.trials)

    def batch_count(self) -> int:
        """How many batches a tpe search makes (1 for another sampler: all its trials at once)."""
        return -(-self.trials // self.batch_size()) if self.sampler == "tpe" else 1

    def draw(self, batch: int = 0, history: Sequence[tuple[dict[str, Any], float | None]] = ()) -> list[dict[str, Any]]:
        """The configurations of a batch (a tpe search's: from the earlier trials' values and held-out loss, None
        for one that did not succeed); every configuration at once for the other samplers."""
        if self.sampler != "tpe":
            return draw(self.space, self.trials, self.seed, self.sampler, INT_FIELDS)
        size = min(self.batch_size(), self.trials - batch * self.batch_size())
        return tpe_batch(self.space, INT_FIELDS, self.seed, batch, size, history, self.batch_size())


class Halving(BaseModel):
    """Successive halving: at each rung (min_epochs, min_epochs·η, min_epochs·η², … epochs, below num_epochs)
    every live trial of a group is scored on held-out sequences and the best 1/η go on."""

    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["halving"] = Field(description="The scheduler: successive halving.")
    min_epochs: int = Field(ge=1, le=10_000, description="Epochs every trial trains before the first rung (r).")
    reduction: int = Field(3, ge=2, le=64, description="η: each rung keeps the best 1/η of the live trials.")

    def rungs(self, num_epochs: int) -> list[int]:
        """The epochs after which trials are scored and the worst pruned (those below num_epochs)."""
        out, epochs = [], self.min_epochs
        while epochs < num_epochs:
            out.append(epochs)
            epochs *= self.reduction
        return out

    def survivors(self, live: int) -> int:
        """How many of `live` trials go on past a rung: the best 1/η, at least one."""
        return max(1, live // self.reduction)


class SweepRequest(BaseModel):
    """Base training parameters and a grid (every combination) or a random search over some of them."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = Field(None, max_length=100, description="A label for people (the MLflow parent run's name).")
    params: dict[str, Any] = Field(default_factory=dict, description="Training parameters every trial shares.")
    grid: dict[str, list[Value]] | None = Field(
        None, description="Per parameter, the values to try: every combination is a trial."
    )
    random: RandomSearch | None = Field(None, description="A random search instead of a grid.")
    scheduler: Halving | None = Field(
        None, description="Stop losing trials early (successive halving); none: every trial trains every epoch."
    )

    @model_validator(mode="after")
    def _one_search(self) -> "SweepRequest":
        if (self.grid is None) == (self.random is None):
            raise _error("grid", "give either grid or random")
        space: dict[str, list[Value]] | dict[str, Range | Choice]
        space, where = (self.grid, "grid") if self.grid is not None else (self._random().space, "random.space")
        for name, dim in space.items():
            if name not in SEARCHABLE:
                raise _error(f"{where}.{name}", f"{name!r} cannot be searched; searchable: {', '.join(SEARCHABLE)}")
            if name in self.params:
                raise _error(f"{where}.{name}", f"{name!r} is both in params and searched")
            if isinstance(dim, Range) and (problem := dim.problem(name in INT_FIELDS)):
                raise _error(f"{where}.{name}", problem)
        if self.grid is not None:
            count = math.prod(len(v) for v in self.grid.values())
            if any(not v for v in self.grid.values()) or count > MAX_TRIALS:
                raise _error("grid", f"the grid makes {count} trials; a sweep has 1 to {MAX_TRIALS}")
        self._tpe_fields()
        first = self.configurations()
        # A tpe search's later trials are drawn after POST: the space's edges stand for them (sweep_edges.py).
        later = [("a point at the edge of the space", e) for e in self._edges(first[0])]
        for label, trial in [*((f"trial {i}", t) for i, t in enumerate(first)), *later]:
            try:
                params = TrainingParams.model_validate({**self.params, **trial})
            except ValidationError as exc:
                error = exc.errors()[0]
                field = (error.get("ctx") or {}).get("field") or ".".join(map(str, error["loc"]))
                source = "params" if field in self.params else where
                values = ", ".join(f"{k}={v!r}" for k, v in trial.items())
                raise _error(f"{source}.{field}", f"{label} ({values}): {error['msg']}") from None
            if self.scheduler is not None and not self.scheduler.rungs(params.num_epochs):
                raise _error(
                    "scheduler.min_epochs",
                    f"min_epochs ({self.scheduler.min_epochs}) leaves no rung: it must "
                    f"be below num_epochs ({params.num_epochs}, {label})",
                )
        return self

    def _edges(self, base: dict[str, Value]) -> list[dict[str, Value]]:
        return edges(self._random().space, INT_FIELDS, base) if self._tpe() else []

    def _tpe(self) -> bool:
        return self.random is not None and self.random.sampler == "tpe"

    def _tpe_fields(self) -> None:
        """A batch only with tpe; tpe not with the halving scheduler."""
        if self.random is not None and self.random.batch is not None and not self._tpe():
            raise _error("random.batch", "batch is for the tpe sampler (the others draw every trial at once)")
        if self._tpe() and self.scheduler is not None:
            raise _error(
                "scheduler",
                "the halving scheduler does not go with the tpe sampler: tpe learns from each batch's held-out "
                "scores at its end, halving prunes inside a group; use one or the other",
            )

    def planned(self) -> int:
        """How many trials the sweep makes in all (a tpe search: over all its batches)."""
        if self.grid is not None:
            return math.prod(len(v) for v in self.grid.values())
        return self._random().trials

    def configurations(self) -> list[dict[str, Value]]:
        """The searched values of each trial, in order (a tpe search: of its first batch, drawn at random)."""
        if self.grid is not None:
            names = list(self.grid)
            return [dict(zip(names, combo)) for combo in itertools.product(*self.grid.values())]
        return self._random().draw()

    def _random(self) -> RandomSearch:
        """The random search, for a request without a grid (the validator allows exactly one of them)."""
        assert self.random is not None, "a request has a grid or a random search"
        return self.random

    def trials(self, configurations: list[dict[str, Value]] | None = None) -> list[TrainingParams]:
        """Every trial's training parameters (of configurations, by default the request's: a tpe search's first
        batch), with a concrete seed (a random one when neither params nor the search set it)."""
        out = []
        for trial in self.configurations() if configurations is None else configurations:
            params = TrainingParams.model_validate({**self.params, **trial})
            out.append(params if params.seed is not None else params.resolved())
        return out


def shape_key(params: TrainingParams) -> tuple:
    """What trials must share to train as one program."""
    return tuple(getattr(params, n) for n in SHAPE_FIELDS)


def group(trials: list[TrainingParams], size: int) -> list[list[int]]:
    """Trial indexes packed into groups of the same shapes, at most size each, in trial order."""
    by_shape: dict[tuple, list[int]] = {}
    for index, params in enumerate(trials):
        by_shape.setdefault(shape_key(params), []).append(index)
    return [members[i : i + size] for members in by_shape.values() for i in range(0, len(members), size)]
