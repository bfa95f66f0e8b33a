"""Which MLflow failures are retried, and the Outage of one MLflow server."""

import time

import pytest
import requests
import urllib3
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2 as codes
from mlflow.tracking import MlflowClient

from worker.retry import Unreachable
from worker.tracking.mlflow_retry import MlflowUnavailable, mlflow_outage, transient


@pytest.mark.parametrize(
    "code, retried",
    [
        ("INTERNAL_ERROR", True),  # 500: also what MLflow raises for a refused connection
        ("TEMPORARILY_UNAVAILABLE", True),  # 503
        ("DEADLINE_EXCEEDED", True),  # 504
        ("REQUEST_LIMIT_EXCEEDED", True),  # 429
        ("INVALID_PARAMETER_VALUE", False),  # 400
        ("RESOURCE_ALREADY_EXISTS", False),  # 400
        ("UNAUTHENTICATED", False),  # 401
        ("PERMISSION_DENIED", False),  # 403
        ("RESOURCE_DOES_NOT_EXIST", False),  # 404
        ("ABORTED", False),  # 409
    ],
)
def test_mlflow_errors_are_retried_for_5xx_408_and_429_only(code: str, retried: bool):
    assert transient(MlflowException("x", error_code=getattr(codes, code))) is retried


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status}", response=response)


@pytest.mark.parametrize(
    "status, retried",
    [
        (500, True),
        (502, True),
        (503, True),
        (408, True),
        (429, True),
        (400, False),
        (401, False),
        (404, False),
        (409, False),
    ],
)
def test_http_errors_are_retried_for_5xx_408_and_429_only(status: int, retried: bool):
    assert transient(http_error(status)) is retried


def test_network_errors_are_retried_and_other_errors_are_not():
    for error in (
        ConnectionRefusedError(),
        TimeoutError(),
        OSError("network unreachable"),
        requests.ConnectionError(),
        requests.Timeout(),
        requests.HTTPError("no response"),
        urllib3.exceptions.ProtocolError("reset"),
    ):
        assert transient(error), error
    for error in (ValueError(), KeyError("run"), RuntimeError("boom"), TypeError()):
        assert not transient(error), error


def test_a_refused_connection_is_transient(fail_fast_mlflow, closed_port):
    with pytest.raises(MlflowException) as raised:
        MlflowClient(tracking_uri=f"http://127.0.0.1:{closed_port}").get_experiment_by_name("x")
    assert transient(raised.value)
    with pytest.raises(requests.ConnectionError) as refused:
        requests.get(f"http://127.0.0.1:{closed_port}/health", timeout=2)
    assert transient(refused.value)


def test_a_missing_run_is_not_transient(client, mlflow_url):
    with pytest.raises(MlflowException) as raised:
        client.get_run("0" * 32)
    assert raised.value.get_http_status_code() == 404 and not transient(raised.value)
    response = requests.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": "0" * 32}, timeout=10)
    with pytest.raises(requests.HTTPError) as refused:
        response.raise_for_status()
    assert not transient(refused.value)


def test_mlflow_outage_names_the_server_and_raises_mlflow_unavailable():
    outage = mlflow_outage("http://mlflow:5000", 12)
    assert outage.name == "MLflow at http://mlflow:5000" and outage.limit_s == 12
    assert outage.transient is transient and outage.error is MlflowUnavailable
    assert issubclass(MlflowUnavailable, Unreachable)


def test_mlflow_outage_gives_up_on_a_server_that_is_gone(fail_fast_mlflow, closed_port):
    uri = f"http://127.0.0.1:{closed_port}"
    client = MlflowClient(tracking_uri=uri)
    started = time.monotonic()
    with pytest.raises(
        MlflowUnavailable, match=rf"^MLflow at {uri} unreachable .* while finding the experiment: MlflowException"
    ):
        mlflow_outage(uri, 0.5).call(lambda: client.get_experiment_by_name("x"), "finding the experiment")
    assert 0.5 <= time.monotonic() - started < 5


def test_mlflow_outage_raises_a_refusal_of_the_server_at_once(client, mlflow_url):
    calls = []

    def get_missing_run():
        calls.append(1)
        return client.get_run("0" * 32)

    outage = mlflow_outage(mlflow_url, 30)
    with pytest.raises(MlflowException, match=r"not found|RESOURCE_DOES_NOT_EXIST"):
        outage.call(get_missing_run, "reading the run")
    assert calls == [1] and outage.down_s == 0


def test_a_tracking_server_out_of_database_connections_is_overloaded_not_refusing():
    busy = MlflowException(
        "QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00",
        error_code=codes.BAD_REQUEST,
    )
    assert transient(busy) and not transient(MlflowException("bad param", error_code=codes.BAD_REQUEST))
