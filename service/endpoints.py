"""Each HTTP endpoint declared once, beside its view: method, path, schemas, access and rate limit.

The OpenAPI document, token checks and rate limits all read these declarations.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import Blueprint, Flask
from pydantic import BaseModel

Schema = type[BaseModel] | dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """One documented answer: status, schema (a model, or a raw JSON schema), description, headers."""

    status: int
    schema: Schema
    description: str = "OK"
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)
    media: str = "application/json"


@dataclass(frozen=True)
class Endpoint:
    """What an endpoint takes and answers, who may call it and how often."""

    method: str
    path: str  # a Flask rule: /jobs/<job_id>
    answers: tuple[Answer, ...]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: tuple[dict[str, Any], ...] = ()  # header parameters, as OpenAPI writes them
    error_notes: dict[int, str] = field(default_factory=dict)  # where an error means more than usual here
    # Who may call it once tokens are on: anyone, a token holder, or (PREDICT_REQUIRES_TOKEN) the model users.
    access: Literal["public", "jobs", "models"] = "public"
    rate_limit: Literal["jobs", "predict", "models"] | None = None

    @property
    def openapi_path(self) -> str:
        """The path as OpenAPI writes it: /jobs/{job_id}."""
        return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", self.path)


def route(target: Blueprint | Flask, endpoint: Endpoint) -> Callable[[Callable], Callable]:
    """Register the decorated view at endpoint's method and path, and keep the declaration on it."""

    def register(view: Callable) -> Callable:
        view.endpoint = endpoint  # type: ignore[attr-defined]  # a function takes attributes; Callable's type has none
        target.add_url_rule(endpoint.path, view_func=view, methods=[endpoint.method.upper()])
        return view

    return register


def declared(app: Flask) -> dict[str, Endpoint]:
    """Flask endpoint name → declaration, for every declared view of app."""
    return {
        name: endpoint
        for name, view in app.view_functions.items()
        if isinstance(endpoint := getattr(view, "endpoint", None), Endpoint)
    }


def of(app: Flask, name: str | None) -> Endpoint | None:
    """The declaration of the endpoint a request matched, if it has one."""
    view = app.view_functions.get(name or "")
    found = getattr(view, "endpoint", None)
    return found if isinstance(found, Endpoint) else None
