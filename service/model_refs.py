"""The model-reference grammar: one definition for the request schemas and the resolver."""

import re
from dataclasses import dataclass
from typing import Literal

# ASCII classes only (pydantic's regex engine reads \d and \w as Unicode); MLflow stores versions
# as 64-bit integers, hence at most 18 digits.
Kind = Literal["default", "run", "job", "version", "alias"]
FORMS: dict[Kind, str] = {
    "run": r"(?P<run_id>[0-9a-f]{32})",
    "job": r"(?P<job_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
    "version": r"models:/(?P<name>[^/@]+)/(?P<version>[0-9]{1,18})",
    "alias": r"models:/(?P<name>[^/@]+)@(?P<alias>[A-Za-z0-9_-]+)",
}
_MATCHERS = {kind: re.compile(f"^{form}$") for kind, form in FORMS.items()}
# The same forms as one pattern the request schemas (and so the OpenAPI document) carry.
PATTERN = "^(?:" + "|".join(re.sub(r"\?P<\w+>", "?:", form) for form in FORMS.values()) + ")$"
MESSAGE = "not a model reference: a job id, an MLflow run id, models:/NAME/VERSION or models:/NAME@ALIAS"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference; the fields its kind names are set."""

    kind: Kind
    run_id: str | None = None
    job_id: str | None = None
    name: str | None = None
    version: str | None = None
    alias: str | None = None

    @property
    def moves(self) -> bool:
        """Whether what it names can change (the default, an alias); versions, runs and jobs never do."""
        return self.kind in ("default", "alias")


def parse(ref: str | None) -> ModelRef | None:
    """The reference's parts (kind 'default', the champion, for None), or None when it is no reference."""
    if ref is None:
        return ModelRef("default")
    for kind, matcher in _MATCHERS.items():
        if m := matcher.match(ref):
            return ModelRef(kind, **m.groupdict())
    return None
