"""Fenced steps against a real Redis: all of a step or none, and only while the attempt holds its leases."""

import uuid

import pytest

from contract.fence import Fence, LeaseLost, Step
from contract.job_store import JobStore, LeaseGrant, encode
from contract.sweep_store import SweepStore


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}")


def running(store: JobStore, token: str = "me") -> tuple[str, Fence]:
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running", lease=LeaseGrant(token, 30_000))
    return job.id, Fence(token, (store.lease_key(job.id),))


def test_a_step_applies_while_the_token_holds_the_lease(store):
    job_id, fence = running(store)
    store.fenced.run(
        Step(fence)
        .hset(store.key(job_id), encode({"progress": {"epochs": 1, "steps": 1, "step": 1}}))
        .set(f"{store.prefix}:x", b"\x00bytes", ttl_s=60)
    )
    assert store.get(job_id).progress.step == 1 and store.redis.get(f"{store.prefix}:x") == b"\x00bytes"


@pytest.mark.parametrize("holder", ["another attempt", None])
def test_a_step_is_refused_whole_once_the_lease_is_another_attempts_or_lapsed(store, holder):
    job_id, fence = running(store)
    if holder:
        store.redis.set(store.lease_key(job_id), holder)
    else:
        store.redis.delete(store.lease_key(job_id))
    with pytest.raises(LeaseLost):
        store.fenced.run(
            Step(fence).set(f"{store.prefix}:x", "1").move(store.key(job_id), job_id, "succeeded", {}), release=True
        )
    assert store.get(job_id).status == "running" and not store.redis.exists(f"{store.prefix}:x")
    assert store.redis.get(store.lease_key(job_id)) == (holder.encode() if holder else None)


def test_the_final_move_releases_the_lease_in_the_same_step(store):
    job_id, fence = running(store)
    assert store.fenced.run(
        Step(fence).move(store.key(job_id), job_id, "succeeded", encode({"phase": None})), release=True
    ) == [1]
    assert store.get(job_id).status == "succeeded" and not store.redis.exists(store.lease_key(job_id))
    assert store.count_by_status()["succeeded"] == 1 and store.ids("succeeded") == [job_id]
    assert store.ids("running") == []


def test_the_phase_never_goes_back_once_saving(store):
    job_id, fence = running(store)
    assert store.fenced.run(
        Step(fence).hset_unless(store.key(job_id), encode({"phase": "saving"}), "cancel_requested", True)
    ) == [1]
    store.fenced.run(Step(fence).hset(store.key(job_id), encode({"phase": "training", "metrics": {"loss": 0.5}})))
    job = store.get(job_id)
    assert job.phase == "saving" and job.metrics.loss == 0.5
    assert not store.request_cancel(job_id), "a DELETE now is a 409"
    store.fenced.run(Step(fence).move(store.key(job_id), job_id, "succeeded", encode({"phase": None})), release=True)
    assert store.get(job_id).phase is None, "a finished job has no phase"


def test_saving_is_refused_once_a_cancel_was_asked_for(store):
    job_id, fence = running(store)
    assert store.request_cancel(job_id)
    assert store.fenced.run(
        Step(fence).hset_unless(store.key(job_id), encode({"phase": "saving"}), "cancel_requested", True)
    ) == [0]
    assert store.get(job_id).phase != "saving"


def test_a_group_is_counted_once_and_the_last_one_says_so(store):
    sweeps = SweepStore(store)
    key, done = sweeps.key("s"), sweeps.done_key("s")
    store.redis.hset(key, "groups_left", 2)
    _job_id, fence = running(store)
    assert store.fenced.run(Step(fence).group_done(key, done, 0)) == [0]
    assert store.fenced.run(Step(fence).group_done(key, done, 0)) == [0], "counted once"
    assert store.fenced.run(Step(fence).group_done(key, done, 1)) == [1]


def test_an_append_adds_to_a_list_and_sets_its_ttl_again(store):
    job_id, fence = running(store)
    key = f"{store.prefix}:pieces"
    store.fenced.run(Step(fence).append(key, b"\x00one", ttl_s=60))
    store.redis.pexpire(key, 1000)
    store.fenced.run(Step(fence).append(key, b"two", ttl_s=60).set(f"{store.prefix}:head", b"h", ttl_s=60))
    assert store.redis.lrange(key, 0, -1) == [b"\x00one", b"two"] and 59_000 < store.redis.pttl(key) <= 60_000
    store.redis.set(store.lease_key(job_id), "another attempt")
    with pytest.raises(LeaseLost):
        store.fenced.run(Step(fence).append(key, b"three"))
    assert store.redis.llen(key) == 2
