"""Redis near and at its maxmemory (no eviction): /readyz and /metrics say so, submissions get a 503, reads go on.

A Redis of the test's own, whose maxmemory the test sets; the stack's MLflow answers /readyz's other question.
"""

import secrets
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings
from tests.service.test_auth import bearer
from tests.service.test_sweeps import GRID, TINY
from tests.support import RedisServer, problem

TOKEN = secrets.token_urlsafe(32)


@pytest.fixture
def bounded(tmp_path) -> Iterator[redis.Redis]:
    """A Redis of its own, bounded to four times what it uses empty, evicting nothing."""
    server = RedisServer(tmp_path / "bounded").start()
    client = redis.Redis(port=server.port)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 4 * client.info("memory")["used_memory"])
    yield client
    client.close()
    server.stop()


def fill_to(client: redis.Redis, fraction: float) -> None:
    """Write filler until Redis uses fraction of its maxmemory (1: until it refuses even a small write)."""
    i = 0
    for size in (50_000, 1_000, 10):
        while client.info("memory")["used_memory"] < fraction * client.info("memory")["maxmemory"]:
            i += 1
            try:
                client.set(f"filler:{i}", b"x" * size)
            except redis.exceptions.OutOfMemoryError:
                assert fraction >= 1
                break
            assert i < 100_000, "Redis never filled"


def fill_up(client: redis.Redis) -> None:
    """Fill Redis until it refuses a write, then bound it below what it uses.

    Redis frees client buffers now and then (its cron); at its bound to the byte, that lets a write through.
    """
    fill_to(client, 1)
    client.config_set("maxmemory", client.info("memory")["used_memory"] - 256 * 1024)


def test_readiness_and_metrics_follow_redis_memory_and_a_full_redis_refuses_only_writes(bounded, stack):
    port = bounded.connection_pool.connection_kwargs["port"]
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{port}/0",
        mlflow_tracking_uri=stack.mlflow,
        api_tokens=[TOKEN],
        redis_memory_warn_fraction=0.6,
    )
    client = create_app(settings).test_client()
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and 0 < ready["redis_memory"] < 0.6, ready
    job = client.post("/jobs", json=TINY, headers=bearer(TOKEN)).get_json()
    sweep = client.post("/sweeps", json=GRID, headers=bearer(TOKEN)).get_json()

    fill_to(bounded, 0.7)
    resp = client.get("/readyz")
    assert resp.status_code == 200 and resp.get_json()["status"] == "degraded", resp.get_json()
    assert "near its maxmemory" in resp.get_json()["redis"]
    metrics = {
        sample.name: sample.value
        for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
        for sample in family.samples
    }
    bound = int(bounded.config_get("maxmemory")["maxmemory"])
    assert metrics["echo_rnn_redis_maxmemory_bytes"] == bound
    assert 0.6 * bound <= metrics["echo_rnn_redis_used_memory_bytes"] <= bound, metrics

    fill_up(bounded)
    body = problem(client.get("/readyz"), 503)
    assert "redis is full" in body["detail"] and "refuses writes" in body["detail"], body
    # Writes are refused as an outage is, never a 500, and lose nothing; reads go on.
    problem(client.post("/jobs", json=TINY, headers=bearer(TOKEN)), 503)
    problem(client.post("/sweeps", json=GRID, headers=bearer(TOKEN)), 503)
    assert [j["id"] for j in client.get("/jobs?status=queued", headers=bearer(TOKEN)).get_json()["jobs"]][-1] == job[
        "id"
    ]
    assert [s["id"] for s in client.get("/sweeps", headers=bearer(TOKEN)).get_json()["sweeps"]] == [sweep["id"]]
    assert client.get(f"/sweeps/{sweep['id']}", headers=bearer(TOKEN)).status_code == 200
    assert bounded.zcard("echo-rnn:jobs") == 1 + 4
