"""Real servers for the suite: a Redis of its own and the whole stack as make run starts it."""

import shutil
from collections.abc import Iterator

import pytest
import redis

from tests.support import ROOT, RedisServer, Stack, submit, wait_status

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """The suite's own Redis; the machine's Redis is never touched."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server) -> Iterator[redis.Redis]:
    """A client of the suite's Redis."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def stack(redis_server, tmp_path_factory) -> Iterator[Stack]:
    """The running service: MLflow server, two worker processes, API, Flower."""
    running = Stack(ROOT, tmp_path_factory.mktemp("stack"), redis_server.url).start()
    yield running
    running.stop()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(running.log_path, ARTIFACTS / "stack.log")


@pytest.fixture(scope="session")
def trained_job(stack) -> dict:
    """A small job trained through the API to success (3 epochs of the tutorial's settings)."""
    job = submit(stack.api, num_epochs=3, seed=1)
    done = wait_status(stack.api, job["id"], {"succeeded", "failed", "cancelled"}, timeout=240)
    assert done["status"] == "succeeded", (done, stack.logs()[-3000:])
    return done
