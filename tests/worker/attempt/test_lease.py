"""A lease kept alive from a thread against a real Redis, and lost when it can no longer be renewed."""

import time
import uuid

from contract.fence import Fence, LeaseLost
from tests.support import RedisServer
from worker.attempt.lease import LeaseKeeper


def test_a_kept_lease_outlives_its_ttl_and_is_released_at_the_end(redis_client):
    key = f"test:lease:{uuid.uuid4().hex}"
    redis_client.set(key, "me", px=3000)
    keeper = LeaseKeeper(redis_client, Fence("me", (key,)), 3).start()
    time.sleep(4)
    assert redis_client.get(key) == b"me" and not keeper.lost
    keeper.stop(release=True)
    assert not redis_client.exists(key)


def test_a_lease_taken_by_another_owner_is_lost_and_left_alone(redis_client):
    key = f"test:lease:{uuid.uuid4().hex}"
    redis_client.set(key, "me", px=3000)
    keeper = LeaseKeeper(redis_client, Fence("me", (key,)), 3).start()
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
    keeper = LeaseKeeper(client, Fence("me", ("lease",)), 3).start()
    server.stop()
    started = time.monotonic()
    while not keeper.lost:
        time.sleep(0.05)
    assert time.monotonic() - started < 3, "lost before the lease could lapse and be taken over"
    keeper.stop(release=False)


def test_every_lease_of_a_group_is_renewed_together_and_one_taken_loses_them_all(redis_client):
    keys = [f"test:lease:{uuid.uuid4().hex}" for _ in range(3)]
    for key in keys:
        redis_client.set(key, "me", px=3000)
    keeper = LeaseKeeper(redis_client, Fence("me", tuple(keys)), 3).start()
    time.sleep(4)
    assert all(redis_client.get(k) == b"me" for k in keys) and not keeper.lost
    redis_client.set(keys[1], "other", px=30_000)
    time.sleep(1.5)
    assert keeper.lost
    keeper.stop(release=True)
    assert [redis_client.get(k) for k in keys] == [None, b"other", None], "only its own are released"


def test_a_renewal_counts_from_when_it_was_sent(redis_client):
    key = f"test:lease:{uuid.uuid4().hex}"
    redis_client.set(key, "me", px=3000)
    keeper = LeaseKeeper(redis_client, Fence("me", (key,)), 3).start(taken_at=time.monotonic() - 2.5)
    assert keeper.lost, "a claim sent 2.5 s ago proves the lease for at most 0.8 of its 3 s"
    keeper.stop(release=True)
