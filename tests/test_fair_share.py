"""A fair share of the workers, through real servers: two tokens, one worker node of one process.

One token's sweep of three groups is queued, then another token's job: the job runs as soon as the group
running ends, before the sweep's next group, and the broker never holds more than the free process's
worth meanwhile. Work still waiting its turn can be cancelled: it never runs, and the worker goes on.

The module starts its own Redis (append-only file), MLflow server and API (two tokens, groups of one
trial) and one worker node; logs go to test-artifacts/fair-share/.
"""

import secrets
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from redis import Redis

from contract import clock
from tests.faults_support import Service, running_service
from tests.support import ROOT, wait_for

ARTIFACTS = ROOT / "test-artifacts" / "fair-share"
FINISHED = {"succeeded", "failed", "cancelled"}
TOKEN_A, TOKEN_B = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
# Seconds of training each (an epoch of 625 windows of 64 steps), plus a run's opening and closing.
TRIAL = dict(num_epochs=20, total_series_length=200_000, truncated_backprop_length=64)
LONG = dict(num_epochs=2000, total_series_length=200_000, truncated_backprop_length=64, seed=3)
QUICK = dict(num_epochs=1, total_series_length=20_000, seed=2)


@pytest.fixture(scope="module")
def up(tmp_path_factory) -> Iterator[Service]:
    """The service with tokens A and B and one worker node of one process."""
    with running_service(
        tmp_path_factory.mktemp("fair-share"),
        ARTIFACTS,
        API_TOKENS=f"{TOKEN_A},{TOKEN_B}",
        SWEEP_GROUP_SIZE="1",
        MAX_ACTIVE_JOBS_PER_TOKEN="100",
    ) as service:
        service.worker("only")
        yield service


def call(service: Service, method: str, path: str, token: str, **kwargs) -> requests.Response:
    return requests.request(
        method, f"{service.api.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
    )


def post(service: Service, path: str, token: str, body: dict) -> dict:
    resp = call(service, "post", path, token, json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()


def job(service: Service, job_id: str, token: str) -> dict:
    return call(service, "get", f"/jobs/{job_id}", token).json()


def wait_job(service: Service, job_id: str, token: str, statuses: set[str], timeout: float = 300) -> dict:
    return wait_for(
        lambda: (j := job(service, job_id, token))["status"] in statuses and j,
        timeout,
        f"job {job_id} reaching {statuses}",
        interval=0.1,
    )


def started(record: dict) -> float:
    return clock.parse(record["started_at"])


class BrokerWatch:
    """The length of Celery's queue in the broker, sampled every 20 ms from a thread."""

    def __init__(self, redis: Redis):
        self.redis, self.most, self._stop = redis, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.most = max(self.most, self.redis.llen("celery"))

    def __enter__(self) -> "BrokerWatch":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def test_another_tokens_job_runs_before_the_next_group_of_a_sweep_queued_before_it(up):
    redis = Redis.from_url(up.redis.url)
    with BrokerWatch(redis) as broker:
        sweep = post(up, "/sweeps", TOKEN_A, {"params": TRIAL, "grid": {"seed": [1, 2, 3]}})
        groups = [t["job_id"] for t in sorted(sweep["trials"], key=lambda t: t["group"])]
        assert len(sweep["groups"]) == 3
        wait_job(up, groups[0], TOKEN_A, {"running"}, 300)
        other = post(up, "/jobs", TOKEN_B, QUICK)
        assert job(up, groups[0], TOKEN_A)["status"] == "running", "the job was posted while the first group ran"
        ended = [wait_job(up, j, TOKEN_A, FINISHED) for j in groups]
        done = wait_job(up, other["id"], TOKEN_B, FINISHED)
    assert done["status"] == "succeeded" and {j["status"] for j in ended} == {"succeeded"}, up.logs()
    waited = started(done) - clock.parse(done["created_at"])
    print(
        f"figure fair-share: token B's job started {waited:.1f} s after its POST, behind the one group running; "
        f"the broker's queue held at most {broker.most}"
    )
    assert started(ended[0]) < started(done) < started(ended[1]) < started(ended[2]), (
        [j["started_at"] for j in ended],
        done["started_at"],
    )
    assert broker.most <= 1, "the broker holds the free process's worth, not the sweep"


def test_work_waiting_its_turn_can_be_cancelled_and_never_runs(up):
    redis = Redis.from_url(up.redis.url)
    busy = post(up, "/jobs", TOKEN_A, LONG)
    wait_job(up, busy["id"], TOKEN_A, {"running"}, 300)
    waiting = post(up, "/jobs", TOKEN_A, QUICK)
    sweep = post(
        up, "/sweeps", TOKEN_A, {"params": {"num_epochs": 1, "total_series_length": 20_000}, "grid": {"seed": [1, 2]}}
    )
    assert redis.zcard("echo-rnn:dispatch:pending") == 3, "one job and two groups wait their turn"
    resp = call(up, "delete", f"/jobs/{waiting['id']}", TOKEN_A)
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled", resp.text
    resp = call(up, "delete", f"/sweeps/{sweep['id']}", TOKEN_A)
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled", resp.text
    assert redis.zcard("echo-rnn:dispatch:pending") == 0
    assert call(up, "delete", f"/jobs/{busy['id']}", TOKEN_A).status_code == 202
    assert wait_job(up, busy["id"], TOKEN_A, FINISHED)["status"] == "cancelled"
    after = post(up, "/jobs", TOKEN_B, QUICK)
    assert wait_job(up, after["id"], TOKEN_B, FINISHED)["status"] == "succeeded", up.logs()
    for job_id in [waiting["id"], *(t["job_id"] for t in sweep["trials"])]:
        record = job(up, job_id, TOKEN_A)
        assert record["status"] == "cancelled" and record["started_at"] is None and record["attempts"] == 0, record
    time.sleep(1)
    assert redis.zcard("echo-rnn:dispatch:inflight") == 0, "every unit that went has ended and left"
