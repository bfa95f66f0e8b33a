"""A lease kept alive from a thread against a real Redis, and lost when it can no longer be renewed."""

import time
import uuid

from contract.job_store import Lease
from worker.lease import LeaseKeeper, LeaseLost
from tests.support import RedisServer


def test_a_kept_lease_outlives_its_ttl_and_is_released_at_the_end(redis_client):
    key = f"test:lease:{uuid.uuid4().hex}"
    redis_client.set(key, "me", px=3000)
    keeper = LeaseKeeper(redis_client, key, Lease("me", 3000)).start()
    time.sleep(4)
    assert redis_client.get(key) == b"me" and not keeper.lost
    keeper.stop(release=True)
    assert not redis_client.exists(key)


def test_a_lease_taken_by_another_owner_is_lost_and_left_alone(redis_client):
    key = f"test:lease:{uuid.uuid4().hex}"
    redis_client.set(key, "me", px=3000)
    keeper = LeaseKeeper(redis_client, key, Lease("me", 3000)).start()
    redis_client.set(key, "other", px=30_000)
    time.sleep(1.5)
    assert keeper.lost
    try:
        keeper.check()
        raise AssertionError("check() should raise")
    except LeaseLost:
        pass
    keeper.stop(release=True)
    assert redis_client.get(key) == b"other"


def test_a_lease_that_cannot_be_renewed_is_lost_before_it_lapses(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    import redis

    client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=0.5)
    client.set("lease", "me", px=3000)
    keeper = LeaseKeeper(client, "lease", Lease("me", 3000)).start()
    server.stop()
    started = time.monotonic()
    while not keeper.lost:
        time.sleep(0.05)
    assert time.monotonic() - started < 3, "lost before the lease could lapse and be taken over"
    keeper.stop(release=False)
