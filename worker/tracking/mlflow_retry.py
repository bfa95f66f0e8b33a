"""Which MLflow failures are worth retrying, and the retrying wrapper of one MLflow server."""

import threading
from collections.abc import Callable

import requests
import urllib3
from mlflow.exceptions import MlflowException

from worker.retry import Outage, Unreachable


class MlflowUnavailable(Unreachable):
    """MLflow did not take the job's data within the retry limit."""


def transient(exc: BaseException) -> bool:
    """Whether an MLflow call failed because the server is down or overloaded (worth retrying)."""
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()  # 500 for connection errors and exhausted HTTP retries
        # The server answers 400 when its database connections are all busy: overloaded, not a bad request.
        return not 400 <= status < 500 or status in (408, 429) or "QueuePool limit" in str(exc)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        return status >= 500 or status in (408, 429)
    return isinstance(exc, (OSError, requests.RequestException, urllib3.exceptions.HTTPError))


def mlflow_outage(
    tracking_uri: str, limit_s: float, gate: threading.Semaphore | None = None, guard: Callable[[], None] | None = None
) -> Outage:
    """Retrying calls to one MLflow server for at most limit_s of unavailability (at most gate's count at once;
    guard, checked before each try, stops them)."""
    return Outage(f"MLflow at {tracking_uri}", limit_s, transient, MlflowUnavailable, gate=gate, guard=guard)
