"""POST and DELETE against a real Redis where no worker announced itself: work waits in its token's queue, the
broker holds one unit, and a cancelled job leaves its queue."""

import json
import secrets
from collections.abc import Iterator

import pytest
import redis

from contract.dispatch import Dispatch
from service.app import create_app
from service.settings import Settings
from tests.service.test_auth import bearer
from tests.support import free_port

QUEUE_REDIS_DB = 11
TINY = {"num_epochs": 1, "total_series_length": 1000}


@pytest.fixture
def store(redis_server) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{QUEUE_REDIS_DB}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def tokens() -> tuple[str, str]:
    return secrets.token_urlsafe(32), secrets.token_urlsafe(32)


@pytest.fixture
def client(store, tokens):
    url = store.connection_pool.connection_kwargs
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{url['port']}/{QUEUE_REDIS_DB}",
        rate_limit_jobs="",
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
        api_tokens=list(tokens),
    )
    return create_app(settings).test_client()


def broker_ids(store: redis.Redis) -> list[str]:
    return [json.loads(m)["headers"]["id"] for m in reversed(store.lrange("celery", 0, -1))]


def test_jobs_wait_in_their_tokens_queue_and_one_goes_to_the_broker(client, store, tokens):
    first, second, third = (
        client.post("/jobs", json=TINY, headers=bearer(tokens[0])).get_json()["id"] for _ in range(3)
    )
    other = client.post("/jobs", json=TINY, headers=bearer(tokens[1])).get_json()["id"]
    assert broker_ids(store) == [first], "no worker said how many processes it has: one unit in the broker"
    assert [m.task_id for m in Dispatch(store).waiting()] == [second, third, other]
    owners = [m.decode() for m in store.zrange("echo-rnn:dispatch:owners", 0, -1)]
    assert len(owners) == 2 and all(o.startswith("token:") for o in owners), "a queue per token"


def test_a_cancelled_queued_job_leaves_its_queue(client, store, tokens):
    headers = bearer(tokens[0])
    sent, waiting = (client.post("/jobs", json=TINY, headers=headers).get_json()["id"] for _ in range(2))
    resp = client.delete(f"/jobs/{waiting}", headers=headers)
    assert resp.status_code == 200 and resp.get_json()["status"] == "cancelled"
    assert Dispatch(store).waiting() == [] and store.zcard("echo-rnn:dispatch:owners") == 0
    assert client.delete(f"/jobs/{sent}", headers=headers).status_code == 200  # in the broker: its claim skips it
    assert broker_ids(store) == [sent]


def test_a_cancelled_sweep_that_never_started_leaves_its_queue(client, store, tokens):
    headers = bearer(tokens[0])
    blocking = client.post("/jobs", json=TINY, headers=headers).get_json()["id"]
    sweep = client.post("/sweeps", json={"params": TINY, "grid": {"state_size": [4, 8]}}, headers=headers).get_json()
    assert [m.task_id for m in Dispatch(store).waiting()] == [f"{sweep['id']}-g0", f"{sweep['id']}-g1"]
    resp = client.delete(f"/sweeps/{sweep['id']}", headers=headers)
    assert resp.status_code == 200 and resp.get_json()["status"] == "cancelled"
    assert Dispatch(store).waiting() == [] and broker_ids(store) == [blocking]
