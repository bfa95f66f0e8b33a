"""Errors as RFC 9457 problem documents (application/problem+json)."""

from typing import Any

from flask import Flask, Response, json, request
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from service.schemas import PATTERN_MESSAGES

DRAIN_BYTES = 64 * 1024 * 1024  # read at most this much of a refused body before answering
REDIS_RETRY_AFTER_S = 5  # what a 503 for Redis not answering asks a client to wait


class Problem(Exception):
    """An error a client should see, with its HTTP status."""

    def __init__(
        self, status: int, title: str, detail: str, errors: list[dict] | None = None, headers: dict | None = None
    ):
        super().__init__(detail)
        self.status, self.title, self.detail, self.errors, self.headers = status, title, detail, errors, headers or {}


def redis_down(not_done: str = "") -> Problem:
    """The 503 of Redis not answering, one wording everywhere, with Retry-After; not_done says what was not done."""
    return Problem(
        503,
        "Service Unavailable",
        "the job store (Redis) is not answering" + (f"; {not_done}" if not_done else ""),
        headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
    )


def response(
    status: int, title: str, detail: str, errors: list[dict] | None = None, headers: dict | None = None
) -> Response:
    """A problem+json response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return Response(json.dumps(body), status=status, mimetype="application/problem+json", headers=headers)


def field_errors(exc: ValidationError, location: str) -> list[dict]:
    """Pydantic errors as {field, message, location} entries."""
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or err.get("ctx", {}).get("field", "(body)"),
            "message": _message(err),
            "location": location,
        }
        for err in exc.errors()
    ]


def _message(err: ErrorDetails) -> str:
    """Pydantic's message, or ours where its own would quote a regular expression."""
    if err["type"] == "string_pattern_mismatch":
        return PATTERN_MESSAGES.get(str(err.get("ctx", {}).get("pattern")), err["msg"])
    return err["msg"].removeprefix("Value error, ")


def invalid(exc: ValidationError, location: str) -> Problem:
    """A 422 naming every bad field."""
    errors = field_errors(exc, location)
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return Problem(422, "Invalid request", f"invalid {location}: {fields}", errors)


def _drain() -> None:
    """Read and drop the rest of a refused body (up to a bound), so a client that sends it whole reads our 413, not a broken pipe."""
    stream, left = request.environ.get("wsgi.input"), min(request.content_length or 0, DRAIN_BYTES)
    while stream is not None and left > 0:
        chunk = stream.read(min(1 << 16, left))
        if not chunk:
            return
        left -= len(chunk)


def register(app: Flask) -> None:
    """Turn every error, ours or Werkzeug's, into a problem document; never leak a traceback."""

    @app.errorhandler(Problem)
    def _problem(exc: Problem) -> Response:
        return response(exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        if exc.code == 413:
            _drain()
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return response(exc.code or 500, exc.name, exc.description or exc.name, headers=headers)

    @app.errorhandler(RedisError)
    def _redis(exc: RedisError) -> Response:
        return _problem(redis_down())

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.error("unhandled error", exc_info=exc)
        return response(500, "Internal Server Error", "the server failed; the error was logged")
