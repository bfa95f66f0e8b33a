"""The worker's settings: MLflow requests bounded so none lands after the attempt's leases could lapse."""

import pytest

from worker.settings import WorkerSettings


@pytest.mark.parametrize("ttl, timeout", [(30, "6"), (10, "2"), (5, "1")])
def test_an_mlflow_request_ends_within_what_is_left_of_a_lease_and_is_never_retried_unguarded(ttl, timeout):
    settings = WorkerSettings(redis_url="redis://x", mlflow_tracking_uri="http://x", lease_ttl_s=ttl)
    env = settings.mlflow_client_environment()
    assert env["MLFLOW_HTTP_REQUEST_TIMEOUT"] == timeout and env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert 0.8 * ttl + int(timeout) <= ttl + 1e-9


def test_a_shorter_configured_timeout_is_kept():
    settings = WorkerSettings(redis_url="redis://x", mlflow_tracking_uri="http://x", mlflow_http_request_timeout=3)
    assert settings.mlflow_client_environment()["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"
