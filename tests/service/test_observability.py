"""Metrics and logs of the running stack."""

import json

import requests

from tests.support import wait_for


def test_api_metrics_cover_requests_jobs_queue_and_models(stack, trained_job):
    session = (
        requests.Session()
    )  # one keep-alive connection: the second request meets the first's API process and model
    for _ in range(2):
        session.get(f"{stack.api}/predict", params={"sequence": "0110", "model": trained_job["id"]}, timeout=30)
    text = requests.get(f"{stack.api}/metrics", timeout=10).text
    assert (
        'echo_rnn_http_request_duration_seconds_bucket{endpoint="/predict",le="0.005",method="GET",status="200"}'
        in text
    )
    assert 'echo_rnn_jobs{status="succeeded"}' in text
    assert "echo_rnn_queue_length " in text
    hits = [line for line in text.splitlines() if line.startswith("echo_rnn_model_cache_hits_total ")]
    loads = [line for line in text.splitlines() if line.startswith("echo_rnn_model_loads_total ")]
    assert hits and float(hits[0].split()[1]) >= 1 and loads and float(loads[0].split()[1]) >= 1


def test_worker_metrics_through_flower(stack, trained_job):
    flower = f"http://127.0.0.1:{stack.flower_port}/metrics"
    text = wait_for(
        lambda: (t := requests.get(flower, timeout=10).text) and "flower_events_total" in t and t, 30, "flower metrics"
    )
    assert 'task="echo_rnn.train"' in text and 'type="task-succeeded"' in text


def test_logs_are_json_lines_with_the_job_id(stack, trained_job):
    lines = [
        line.split(" | ", 1)[1]
        for line in stack.logs().splitlines()
        if line[9:].startswith(("api.", "worker.")) and " | {" in line
    ]
    records = [json.loads(line) for line in lines]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    about_job = [r for r in records if trained_job["id"] in r["message"]]
    assert about_job and all(r["job_id"] == trained_job["id"] for r in about_job)
    assert any(r["logger"] == "service.requests" and r.get("job_id") == trained_job["id"] for r in records)
    assert any(
        r["logger"].startswith("worker.attempt.") and r.get("job_id") == trained_job["id"] for r in records
    ) or any(r["logger"].startswith("celery") and r.get("job_id") == trained_job["id"] for r in records)
