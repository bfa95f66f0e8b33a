"""GET /predict's common case is answered before Flask, exactly as the route answers it; anything else reaches the route."""

import requests

from tests.support import problem

QUERY = {"sequence": "0110100111010", "model": None}


def test_the_fast_answer_is_the_routes_answer_byte_for_byte(stack, trained_job):
    params = {**QUERY, "model": trained_job["model"]["uri"]}
    fast = requests.get(f"{stack.api}/predict", params=params, timeout=60)
    # A request with an Authorization header always goes through Flask (its hooks check tokens).
    routed = requests.get(f"{stack.api}/predict", params=params, headers={"Authorization": "Bearer x"}, timeout=60)
    assert fast.status_code == routed.status_code == 200, (fast.text, routed.text)
    assert fast.content == routed.content and fast.headers["Content-Type"] == routed.headers["Content-Type"]
    assert fast.json()["echo"][3:] == params["sequence"][:-3]


def test_refused_queries_get_the_routes_problems(client):
    problem(client.get("/predict", query_string={"sequence": "0120"}), 422)
    problem(client.get("/predict", query_string=[("sequence", "01"), ("sequence", "10")]), 400)
    problem(client.get("/predict", query_string={"sequence": "01", "model": "not a ref"}), 422)
    problem(client.get("/predict", query_string={"sequence": "01", "colour": "red"}), 422)
    problem(client.get("/predict", query_string={"sequence": "1" * 65_001}), 413)


def test_a_prediction_is_timed_in_the_latency_histogram(stack, trained_job):
    requests.get(f"{stack.api}/predict", params={**QUERY, "model": trained_job["model"]["uri"]}, timeout=60)
    metrics = requests.get(f"{stack.api}/metrics", timeout=30).text
    counts = [
        line
        for line in metrics.splitlines()
        if line.startswith("echo_rnn_http_request_duration_seconds_count")
        and 'endpoint="/predict"' in line
        and 'method="GET"' in line
        and 'status="200"' in line
    ]
    assert counts and float(counts[0].split()[-1]) >= 1, counts
