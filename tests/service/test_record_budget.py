"""The records budget: jobs and sweep trials one client may make in an hour, deleted ones included.

The app's records and queue live in a database of the suite's Redis that no worker reads.
"""

import secrets
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from service.app import create_app
from service.problems import Problem
from service.record_budget import RecordBudget
from service.settings import Settings
from tests.service.test_auth import bearer
from tests.service.test_sweeps import GRID, TINY
from tests.support import free_port, problem

RECORDS_REDIS_DB = 11
ALICE, BOB = secrets.token_urlsafe(32), secrets.token_urlsafe(32)


@pytest.fixture
def settings(redis_server) -> Iterator[Settings]:
    """Two tokens, sweeps of at most 4 trials, a budget of 8 records an hour; MLflow is never called."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{RECORDS_REDIS_DB}"
    store = redis.Redis.from_url(url)
    store.flushdb()
    yield Settings(
        redis_url=url,
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        rate_limit_jobs="",
        api_tokens=[ALICE, BOB],
        max_sweep_trials=4,
        max_records_per_hour=8,
        max_active_sweeps_per_token=1,
    )
    store.flushdb()
    store.close()


@pytest.fixture
def client(settings):
    return create_app(settings).test_client()


def over_budget(resp) -> int:
    body = problem(resp, 429)
    assert "MAX_RECORDS_PER_HOUR" in body["detail"] and "8 records" in body["detail"], body
    seconds = int(resp.headers["Retry-After"])
    assert 1 <= seconds <= 2 * 3600
    return seconds


def test_records_count_after_a_delete_and_past_the_budget_each_submission_is_a_429(client, settings):
    for _ in range(2):  # POST then DELETE: the records stay made
        sweep = client.post("/sweeps", json=GRID, headers=bearer(ALICE))
        assert sweep.status_code == 202, sweep.get_json()
        assert client.delete(f"/sweeps/{sweep.get_json()['id']}", headers=bearer(ALICE)).status_code == 200
    over_budget(client.post("/sweeps", json=GRID, headers=bearer(ALICE)))
    over_budget(client.post("/jobs", json=TINY, headers=bearer(ALICE)))
    # Another token has a budget of its own.
    assert client.post("/jobs", json=TINY, headers=bearer(BOB)).status_code == 202
    assert client.post("/sweeps", json=GRID, headers=bearer(BOB)).status_code == 202
    over_budget(client.post("/sweeps", json={"params": TINY, "grid": {"seed": [1, 2, 3, 4]}}, headers=bearer(BOB)))
    jobs = redis.Redis.from_url(settings.redis_url).zcard("echo-rnn:jobs")
    assert jobs == 8 + 5, "every record made: 8 of alice's trials, bob's job and 4 trials"


def test_a_submission_refused_for_another_reason_costs_no_records(client):
    first = client.post("/sweeps", json=GRID, headers=bearer(ALICE)).get_json()
    for _ in range(3):  # its one active sweep: a 429 that writes nothing
        body = problem(client.post("/sweeps", json=GRID, headers=bearer(ALICE)), 429)
        assert "MAX_ACTIVE_SWEEPS_PER_TOKEN" in body["detail"]
    problem(client.post("/jobs", json={"num_epochs": 0}, headers=bearer(ALICE)), 422)
    client.delete(f"/sweeps/{first['id']}", headers=bearer(ALICE))
    assert client.post("/sweeps", json=GRID, headers=bearer(ALICE)).status_code == 202
    over_budget(client.post("/jobs", json=TINY, headers=bearer(ALICE)))


def test_an_idempotent_replay_costs_no_records(client):
    key = {"Idempotency-Key": secrets.token_hex(8), **bearer(ALICE)}
    assert client.post("/jobs", json=TINY, headers=key).status_code == 202
    for _ in range(10):
        assert client.post("/jobs", json=TINY, headers=key).status_code == 200
    for _ in range(7):
        assert client.post("/jobs", json=TINY, headers=bearer(ALICE)).status_code == 202
    over_budget(client.post("/jobs", json=TINY, headers=bearer(ALICE)))


def test_concurrent_submissions_never_pass_the_budget(settings):
    budget = RecordBudget(redis.Redis.from_url(settings.redis_url), "budget-test", budget=10)
    won: list[int] = []
    go = threading.Barrier(24)

    def submit() -> None:
        go.wait()
        try:
            budget.reserve("token:x", 1)
            won.append(1)
        except Problem:
            pass

    threads = [threading.Thread(target=submit) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 10


def test_the_window_slides_and_retry_after_says_when_there_is_room(settings):
    budget = RecordBudget(
        redis.Redis.from_url(settings.redis_url), f"budget-{secrets.token_hex(4)}", budget=4, window_s=4
    )
    while time.time() % 4 > 0.5:  # start early in a window
        time.sleep(0.05)
    budget.reserve("token:x", 4)
    with pytest.raises(Problem) as refused:
        budget.reserve("token:x", 1)
    wait = int(refused.value.headers["Retry-After"])
    assert 3 <= wait <= 6
    time.sleep(4 - time.time() % 4 + 0.1)  # the next window: last window's 4 still weigh almost fully
    with pytest.raises(Problem):
        budget.reserve("token:x", 1)
    time.sleep(max(0.0, wait - 4.1) + 0.5)
    budget.give_back(budget.reserve("token:x", 1))  # room once enough of the last window has slid out
    budget.reserve("token:x", 1)  # and what a refused submission gave back is room again
