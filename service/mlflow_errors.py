"""Failures of MLflow (and of the job store behind job references) as the API's problems."""

from collections.abc import Callable
from typing import TypeVar

from mlflow.exceptions import MlflowException
from redis.exceptions import RedisError

from contract.mlflow_names import NOT_FOUND_CODES
from service.problems import Problem, redis_down

T = TypeVar("T")


def call_mlflow(call: Callable[[], T]) -> T:
    """Run an MLflow call; its failures (and the job store's, for job references) become a 503 problem."""
    try:
        return call()
    except Problem:
        raise
    except RedisError as exc:
        raise redis_down() from exc
    except MlflowException as exc:
        raise Problem(503, "MLflow unavailable", f"the model store failed: {exc.message[:200]}") from exc
    except OSError as exc:
        raise Problem(503, "MLflow unavailable", f"the model store cannot be reached: {exc}") from exc


def or_not_found(call: Callable[[], T], ref: str) -> T:
    """Run an MLflow lookup; 'no such thing' becomes a 404 problem naming ref."""
    try:
        return call()
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND_CODES:
            raise Problem(404, "Unknown model", f"no model {ref}") from exc
        raise
