"""Validation and errors of the API: every bad request gets a problem document, never a 500."""

import json

import pytest

from service.app import create_app
from service.settings import Settings
from tests.support import free_port, problem


def fields(body: dict) -> set[str]:
    return {e["field"] for e in body["errors"]}


@pytest.mark.parametrize(
    "payload, bad",
    [
        ({"num_epochs": 0}, {"num_epochs"}),
        ({"num_epochs": "many"}, {"num_epochs"}),
        ({"learning_rate": -0.1}, {"learning_rate"}),
        ({"learning_rate": "NaN"}, {"learning_rate"}),
        ({"learning_rate": "Infinity"}, {"learning_rate"}),
        ({"state_size": 10_000}, {"state_size"}),
        ({"device": "tpu"}, {"device"}),
        ({"colour": "red"}, {"colour"}),
        ({"seed": -1, "batch_size": 0}, {"seed", "batch_size"}),
        ({"total_series_length": 10}, {"total_series_length"}),
        ({"echo_step": 500, "total_series_length": 400, "batch_size": 1}, {"echo_step"}),
        ({"num_epochs": 10_000, "total_series_length": 5_000_000}, {"num_epochs"}),
    ],
)
def test_bad_training_parameters_name_the_field(client, payload, bad):
    body = problem(client.post("/jobs", json=payload), 422)
    assert fields(body) == bad
    assert all(e["message"] for e in body["errors"])


def test_series_too_short_says_why(client):
    body = problem(client.post("/jobs", json={"total_series_length": 10}), 422)
    assert "too short for one window" in body["errors"][0]["message"]


def test_non_object_bad_json_and_wrong_type(client):
    problem(client.post("/jobs", json=[1, 2]), 422)
    problem(client.post("/jobs", data="{not json", content_type="application/json"), 400)
    problem(client.post("/jobs", data="num_epochs=3", content_type="application/x-www-form-urlencoded"), 415)
    problem(client.post("/predict", data="x", content_type="text/plain"), 415)


@pytest.mark.parametrize("path", ["/jobs", "/sweeps", "/predict"])
def test_a_body_nested_too_deeply_for_pythons_parser_is_a_400(client, path):
    body = problem(client.post(path, data="[" * 100_000, content_type="application/json"), 400)
    assert "nested too deeply" in body["detail"]


def test_a_body_nested_too_deeply_is_a_400_over_http_too(stack):
    import requests

    resp = requests.post(
        f"{stack.api}/jobs",
        data="[" * 100_000 + "]" * 100_000,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 400 and "nested too deeply" in resp.json()["detail"], resp.text


def test_oversize_body_and_inputs(client):
    problem(
        client.post("/jobs", data=json.dumps({"x": "1" * (1024 * 1024 + 10)}), content_type="application/json"), 413
    )
    problem(client.get("/predict", query_string={"sequence": "1" * 100_001}), 413)
    problem(client.get("/predict", query_string={"sequence": "1" * 65_001}), 413)  # the query's own limit
    problem(client.post("/predict", json={"sequences": ["1"] * 1001}), 413)
    problem(client.post("/predict", json={"sequences": ["1" * 100_001]}), 413)


def test_bad_predictions_requests(client):
    assert fields(problem(client.get("/predict", query_string={"sequence": "01a"}), 422)) == {"sequence"}
    assert fields(problem(client.get("/predict"), 422)) == {"sequence"}
    assert fields(problem(client.get("/predict", query_string={"sequence": "01", "x": "1"}), 422)) == {"x"}
    assert fields(problem(client.post("/predict", json={"sequences": []}), 422)) == {"sequences"}
    assert fields(problem(client.post("/predict", json={"sequences": ["01", 5]}), 422)) == {"sequences.1"}
    assert fields(problem(client.get("/predict", query_string={"sequence": "01", "model": "nonsense"}), 422)) == {
        "model"
    }
    problem(client.get("/predict", query_string={"sequence": "01", "sequence ": "1", "model": "m"}), 422)


def test_unknown_things_are_404(client):
    problem(client.get("/jobs/00000000-0000-0000-0000-000000000000"), 404)
    problem(client.delete("/jobs/nope"), 404)
    problem(client.get("/nowhere"), 404)
    problem(client.get("/predict", query_string={"sequence": "01", "model": "models:/echo-rnn/999999"}), 404)
    problem(client.get("/predict", query_string={"sequence": "01", "model": "models:/echo-rnn@nobody"}), 404)
    problem(client.get("/predict", query_string={"sequence": "01", "model": "0" * 32}), 404)
    problem(
        client.get("/predict", query_string={"sequence": "01", "model": "00000000-0000-0000-0000-000000000000"}), 404
    )


def test_wrong_method_and_list_query(client):
    resp = client.put("/jobs")
    problem(resp, 405)
    assert "POST" in resp.headers["Allow"]
    assert fields(problem(client.get("/jobs", query_string={"status": "sleeping"}), 422)) == {"status"}
    assert fields(problem(client.get("/jobs", query_string={"limit": "0"}), 422)) == {"limit"}


def test_readiness_names_what_is_down(redis_server, stack):
    dead = f"http://127.0.0.1:{free_port()}"
    app = create_app(Settings(redis_url=redis_server.url, mlflow_tracking_uri=dead))
    body = problem(app.test_client().get("/readyz"), 503)
    assert "mlflow" in body["detail"] and "redis" not in body["detail"]
    app = create_app(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", mlflow_tracking_uri=stack.mlflow))
    body = problem(app.test_client().get("/readyz"), 503)
    assert "redis" in body["detail"] and "mlflow" not in body["detail"]


def test_submitting_with_redis_down_is_503_not_500(stack):
    app = create_app(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", mlflow_tracking_uri=stack.mlflow))
    problem(app.test_client().post("/jobs", json={}), 503)


def test_settings_fail_early_without_their_values(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(Exception, match="redis_url"):
        Settings()
