"""The HTTP client of the CLI, and errors turned into messages and exit codes."""

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import requests
import typer

from service.cli.output import err, error_line

P = ParamSpec("P")
R = TypeVar("R")

# Exit codes (the app's help lists them).
FAILED, UNREACHABLE, CANCELLED, INTERRUPTED = 1, 3, 4, 130


class CliError(Exception):
    """A failure to report in a few lines and an exit code, never a traceback."""

    code = FAILED

    def __init__(self, message: str, details: list[str] | None = None):
        super().__init__(message)
        self.message, self.details = message, details or []

    def report(self) -> None:
        """Print the message and its details on stderr."""
        err.print(error_line(self.message))
        for line in self.details:
            err.print(f"  {line}", markup=False)


class Unreachable(CliError):
    """No answer from the API."""

    code = UNREACHABLE


class ApiError(CliError):
    """The API answered with an error (a problem document, usually)."""

    def __init__(self, resp: requests.Response, labels: dict[str, str] | None = None):
        try:
            body = resp.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        self.status, self.body = resp.status_code, body
        title = body.get("title") or f"HTTP {resp.status_code} {resp.reason or ''}".strip()
        detail = body.get("detail")
        errors = body.get("errors") or []
        lines = [_error_line(e, labels or {}) for e in errors if isinstance(e, dict)]
        super().__init__(f"{title}: {detail}" if detail else title, lines)


def _error_line(error: dict, labels: dict[str, str]) -> str:
    """One entry of a problem document's errors: the field (as the CLI names it) and the message."""
    field = str(error.get("field"))
    return f"{labels.get(field, field)}: {error.get('message')}"


class Api:
    """The echo-rnn API at a base URL, with an optional bearer token."""

    def __init__(self, base: str, token: str | None = None, timeout: float = 10.0):
        self.base, self.timeout = base.rstrip("/"), timeout
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json, application/problem+json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(
        self, method: str, path: str, labels: dict[str, str] | None = None, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """The JSON answer of one request; CliError on any failure."""
        limit = timeout or self.timeout
        try:
            resp = self.session.request(method, f"{self.base}{path}", timeout=limit, **kwargs)
        except requests.Timeout:
            raise Unreachable(
                f"cannot reach the API at {self.base} (no answer within {limit:g} s; is it running? make run)"
            ) from None
        except requests.ConnectionError:
            raise Unreachable(f"cannot reach the API at {self.base} (is it running? make run)") from None
        if resp.status_code >= 400:
            raise ApiError(resp, labels)
        try:
            return resp.json()
        except ValueError:
            raise CliError(f"the server at {self.base} did not answer with JSON (is --api the echo-rnn API?)") from None


def handled(fn: Callable[P, R]) -> Callable[P, R]:
    """A command whose CliErrors become a message on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            exc.report()
            raise typer.Exit(exc.code) from None

    return wrapper
