"""Load: 100 jobs submitted at once to two workers all succeed, none lost or run twice; 1,000
concurrent predictions all succeed with the right echo.

"Two workers" are two Celery nodes on one queue, as `docker compose up --scale worker=2` runs
them: the stack's own worker (two job slots, WORKER_CONCURRENCY=2) and a second `docker/bin/worker`
process this test starts with the stack's settings (one slot) and stops after. Each job runs in a
fresh child process (TensorFlow import, XLA compilation, MLflow run, model logging and
registration), so even these tiny jobs take seconds each: on a 2-core machine the 100 take minutes.

The API limits each client (here: everything comes from 127.0.0.1) to RATE_LIMIT_JOBS accepted
jobs and RATE_LIMIT_PREDICT predictions per window, 60 and 1,200 a minute by default. The test
submits as a well-behaved client does: a 429 is no loss, it is retried after its Retry-After with
the same Idempotency-Key. The 1,000 predictions wait, if needed, for a window with room for them.
"""

import json
import re
import signal
import statistics
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.support import ROOT, wait_for

pytestmark = pytest.mark.load

JOBS = 100
TINY = {"num_epochs": 1, "total_series_length": 1000}
JOBS_TIMEOUT_S = 25 * 60
PREDICTIONS = 1000
THREADS = 64
STARTED = re.compile(r"job ([0-9a-f-]{36}) (?:started|resuming)")


class SecondWorker:
    """docker/bin/worker as one more Celery node of the stack, in a process group of its own."""

    def __init__(self, stack, log_path: Path):
        self.log_path = log_path
        env = {**stack.env, "MLFLOW_TRACKING_URI": stack.mlflow, "WORKER_NAME": "load", "WORKER_CONCURRENCY": "1"}
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(ROOT / "docker" / "bin" / "worker")],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: self.process.poll() is None and b"ready." in log_path.read_bytes(), 90, "the second worker")

    def stop(self) -> None:
        """Warm shutdown (SIGTERM: finish the current job), then make sure nothing is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def second_worker(stack, tmp_path):
    worker = SecondWorker(stack, tmp_path / "second-worker.log")
    yield worker
    worker.stop()


def _submit(api: str, params: dict, refusals: list) -> dict:
    """POST /jobs as a client that honours 429s; returns the accepted job."""
    key = f"load-{uuid.uuid4()}"
    deadline = time.monotonic() + 300
    while True:
        resp = requests.post(f"{api}/jobs", json=params, headers={"Idempotency-Key": key}, timeout=60)
        if resp.status_code != 429:
            break
        refusals.append(resp)
        assert time.monotonic() < deadline, "still refused with 429 after 5 minutes"
        time.sleep(float(resp.headers.get("Retry-After", "1")))
    assert resp.status_code in (200, 202), resp.text  # 200: a replay of the same key
    return resp.json()


def _quantiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {cuts[49]:.2f} s, p90 {cuts[89]:.2f} s, max {max(values):.2f} s"


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


@pytest.mark.timeout(JOBS_TIMEOUT_S + 600)
def test_a_hundred_jobs_at_once_all_succeed_once(stack, second_worker, redis_client):
    api = stack.api
    began = time.monotonic()
    refusals: list = []
    barrier = threading.Barrier(JOBS)

    def submit(seed: int) -> dict:
        barrier.wait(30)
        return _submit(api, {**TINY, "seed": seed}, refusals)

    with ThreadPoolExecutor(JOBS) as pool:
        submitted = list(pool.map(submit, range(JOBS)))
    submit_s = time.monotonic() - began
    ids = [job["id"] for job in submitted]
    assert len(set(ids)) == JOBS, "a submission was answered with another's job"
    assert sorted(job["params"]["seed"] for job in submitted) == list(range(JOBS))

    # Follow them all until each has finished, a page of GET /jobs at a time (newest first).
    session = requests.Session()
    done: dict[str, dict] = {}
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while len(done) < JOBS:
        assert time.monotonic() < deadline, (
            f"{JOBS - len(done)} jobs unfinished after {JOBS_TIMEOUT_S} s",
            stack.logs()[-3000:],
        )
        time.sleep(3)
        seen, cursor = set(), None
        while len(seen) < JOBS:
            page = session.get(
                f"{api}/jobs", params={"limit": 100, **({"cursor": cursor} if cursor else {})}, timeout=30
            ).json()
            for job in page["jobs"]:
                if job["id"] in ids:
                    seen.add(job["id"])
                    if job["status"] in {"succeeded", "failed", "cancelled"}:
                        done[job["id"]] = job
            if not (cursor := page["next_cursor"]):
                break
        assert seen == set(ids), f"GET /jobs lost {len(set(ids) - seen)} jobs"
    total_s = time.monotonic() - began

    failed = {i: (j["status"], j["error"]) for i, j in done.items() if j["status"] != "succeeded"}
    assert not failed, failed
    jobs = [done[i] for i in ids]
    assert all(j.get("attempts", 1) == 1 for j in jobs), [
        (j["id"], j.get("attempts")) for j in jobs if j.get("attempts") != 1
    ]
    assert all(j["progress"]["fraction"] == 1.0 for j in jobs)

    # None lost: the queue is empty and no message waits unacknowledged; each task's result is in.
    assert redis_client.llen("celery") == 0
    unacked = {json.loads(m)[0].get("headers", {}).get("id") for m in redis_client.hvals("unacked")}
    assert not unacked & set(ids), unacked & set(ids)
    for job_id in ids:
        meta = json.loads(redis_client.get(f"celery-task-meta-{job_id}"))
        assert (meta["status"], meta["result"]) == ("SUCCESS", "succeeded"), meta

    # Run once: each job started once, on one of the two nodes, and both nodes took jobs.
    starts_first = STARTED.findall(stack.logs())
    starts_second = STARTED.findall(second_worker.logs())
    for job_id in ids:
        assert starts_first.count(job_id) + starts_second.count(job_id) == 1, job_id
    on_second = len(set(ids) & set(starts_second))
    assert 0 < on_second < JOBS, on_second

    # Each job has exactly one MLflow run, finished, and one registered model version from it.
    client = MlflowClient(tracking_uri=stack.mlflow)
    experiment = client.get_experiment_by_name("echo-rnn")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    runs_of = {job_id: [r for r in runs if r.data.tags.get("job_id") == job_id] for job_id in ids}
    for job in jobs:
        found = runs_of[job["id"]]
        assert len(found) == 1, (job["id"], [r.info.run_id for r in found])
        assert found[0].info.run_id == job["mlflow"]["run_id"] and found[0].info.status == "FINISHED"
    versions = client.search_model_versions("name = 'echo-rnn'", max_results=10_000)
    versions_of = {job_id: [v for v in versions if (v.tags or {}).get("job_id") == job_id] for job_id in ids}
    for job in jobs:
        found = versions_of[job["id"]]
        assert len(found) == 1, (job["id"], [v.version for v in found])
        assert str(found[0].version) == job["model"]["version"] and found[0].run_id == job["mlflow"]["run_id"]

    run_s = [_seconds(j["started_at"], j["finished_at"]) for j in jobs]
    wait_s = [_seconds(j["created_at"], j["started_at"]) for j in jobs]
    print(
        f"\n{JOBS} jobs: submitted in {submit_s:.1f} s ({len(refusals)} answers 429 first), "
        f"all finished {total_s:.0f} s after the first submission; "
        f"{on_second} ran on the second worker, {JOBS - on_second} on the stack's.\n"
        f"  running time per job: {_quantiles(run_s)}\n  queued per job: {_quantiles(wait_s)}"
    )


def test_a_thousand_concurrent_predictions_get_no_error(stack, trained_job):
    api, model = stack.api, trained_job["id"]
    rng = np.random.default_rng(7)
    sequences = ["".join(map(str, rng.integers(0, 2, int(n)))) for n in rng.integers(20, 400, 50)]

    # Each sequence asked alone first: the answers to compare the concurrent ones with.
    reference, headers = {}, {}
    for bits in sequences:
        resp = requests.get(f"{api}/predict", params={"sequence": bits, "model": model}, timeout=60)
        assert resp.status_code == 200, resp.text
        reference[bits], headers = resp.json(), resp.headers
    step = trained_job["params"]["echo_step"]
    right = np.mean(
        [a == b for body in reference.values() for a, b in zip(body["echo"][step:], body["sequence"][:-step])]
    )
    assert right >= 0.99, right

    # A window of the per-client prediction limit with room for all of them.
    if "X-RateLimit-Limit" in headers:
        assert int(headers["X-RateLimit-Limit"]) >= PREDICTIONS, (
            f"the API allows a client {headers['X-RateLimit-Limit']}"
        )
        if int(headers["X-RateLimit-Remaining"]) < PREDICTIONS:
            time.sleep(max(0.0, float(headers["X-RateLimit-Reset"]) - time.time()) + 1)

    local = threading.local()
    barrier = threading.Barrier(THREADS)

    def predict(i: int) -> tuple[int, float, str, dict | str]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            barrier.wait(30)  # every thread ready before the first request
        bits = sequences[i % len(sequences)]
        started = time.perf_counter()
        try:
            resp = local.session.get(f"{api}/predict", params={"sequence": bits, "model": model}, timeout=120)
        except requests.RequestException as exc:
            return -1, time.perf_counter() - started, bits, repr(exc)
        elapsed = time.perf_counter() - started
        return resp.status_code, elapsed, bits, resp.json() if resp.status_code == 200 else resp.text[:300]

    began = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(predict, range(PREDICTIONS)))
    wall = time.monotonic() - began

    errors = [(status, body) for status, _, _, body in results if status != 200]
    assert not errors, (len(errors), errors[:5])
    wrong = [bits for _, _, bits, body in results if body != reference[bits]]
    assert not wrong, f"{len(wrong)} answers differ from the same sequence asked alone"
    latency = sorted(elapsed for _, elapsed, _, _ in results)
    cuts = statistics.quantiles(latency, n=100, method="inclusive")
    print(
        f"\n{PREDICTIONS} predictions from {THREADS} threads in {wall:.1f} s ({PREDICTIONS / wall:.0f}/s): "
        f"latency p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms, max {latency[-1] * 1000:.0f} ms"
    )
