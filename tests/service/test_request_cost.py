"""What one request may cost, against the real API under granian: memory, a work budget, oversized bodies."""

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import requests

from tests.faults_support import Api

ONE_LONG_MANY_SHORT = {"sequences": ["01" * 50_000] + ["1"] * 999}  # 105 KB: once one 1,024 × 131,072 rectangle


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (granian's workers), MiB."""
    total, pids = 0, [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
            with open(f"/proc/{current}/task/{current}/children") as children:
                pids += [int(c) for c in children.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


@pytest.fixture(scope="module")
def api(stack, redis_server, tmp_path_factory) -> Iterator[Api]:
    """One API process of the test's own (its memory is measured), on the stack's Redis and MLflow."""
    server = Api(
        tmp_path_factory.mktemp("cost"), redis_server.url, stack.mlflow, RATE_LIMIT_PREDICT="", RATE_LIMIT_JOBS=""
    )
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def small_budget_api(stack, redis_server, tmp_path_factory) -> Iterator[Api]:
    server = Api(tmp_path_factory.mktemp("budget"), redis_server.url, stack.mlflow, PREDICT_BUDGET="100000")
    server.start()
    yield server
    server.kill()


def test_a_long_sequence_among_short_ones_costs_its_own_work_not_a_rectangle(api, trained_job):
    url, model = f"{api.url}/predict", trained_job["model"]["uri"]
    assert requests.get(url, params={"sequence": "0110", "model": model}, timeout=120).status_code == 200
    before = rss_mib(api.process.pid)
    started = time.perf_counter()
    resp = requests.post(url, json={**ONE_LONG_MANY_SHORT, "model": model}, timeout=120)
    took = time.perf_counter() - started
    grew = rss_mib(api.process.pid) - before
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert len(results) == 1000 and len(results[0]["echo"]) == 100_000 and all(len(r["echo"]) == 1 for r in results[1:])
    print(f"\none 100,000-bit sequence and 999 one-bit ones: {took:.2f} s, API memory +{grew:.0f} MiB")
    assert grew <= 100, f"the request grew the API by {grew:.0f} MiB"
    again = time.perf_counter()
    assert requests.post(url, json={**ONE_LONG_MANY_SHORT, "model": model}, timeout=120).status_code == 200
    print(f"the same again (shapes compiled): {time.perf_counter() - again:.2f} s")


def test_a_normal_batch_still_answers(api, trained_job):
    rng = random.Random(3)
    body = {
        "sequences": ["".join(rng.choice("01") for _ in range(100)) for _ in range(1000)],
        "model": trained_job["model"]["uri"],
    }
    requests.post(f"{api.url}/predict", json=body, timeout=120)  # shapes compiled
    started = time.perf_counter()
    resp = requests.post(f"{api.url}/predict", json=body, timeout=120)
    print(f"\n1,000 × 100 bits: {time.perf_counter() - started:.3f} s")
    assert resp.status_code == 200 and len(resp.json()["results"]) == 1000


def test_work_over_the_budget_is_refused_before_anything_is_allocated(small_budget_api, trained_job):
    url = f"{small_budget_api.url}/predict"
    ok = requests.post(url, json={"sequences": ["0110"] * 10, "model": trained_job["model"]["uri"]}, timeout=120)
    assert ok.status_code == 200, ok.text
    before = rss_mib(small_budget_api.process.pid)
    resp = requests.post(url, json={**ONE_LONG_MANY_SHORT, "model": trained_job["model"]["uri"]}, timeout=30)
    assert resp.status_code == 413 and resp.headers["Content-Type"] == "application/problem+json", resp.text
    assert (
        "PREDICT_BUDGET" in resp.json()["detail"] and "589,824" in resp.json()["detail"]
    )  # (131,072 + 1,024 × 16) × 4
    assert rss_mib(small_budget_api.process.pid) - before < 20


def test_a_client_that_sends_a_whole_oversized_body_reads_the_413(api):
    body = json.dumps({"num_epochs": 1, "padding": "x" * (5 * 1024 * 1024)}).encode()
    request = urllib.request.Request(
        f"{api.url}/jobs", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    problem = json.loads(refused.value.read())
    assert problem["status"] == 413 and problem["title"]
