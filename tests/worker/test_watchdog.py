"""The watchdog against a real Redis: lapsed leases sent again once, live ones left, one round at a time."""

import uuid

import pytest

from contract.job_store import JobStore, Lease
from worker.watchdog import Watchdog


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}", retention_s=60)


def test_only_running_jobs_whose_lease_lapsed_are_sent_again_and_only_once(store):
    sent = []
    watchdog = Watchdog(store, lambda job: sent.append((job.id, job.params)) or [job.id], interval_s=0.1)
    alive, lapsed, queued = (store.create({"num_epochs": n}, steps=1) for n in (1, 2, 3))
    store.move(alive.id, "running", lease=Lease("a", 30_000))
    store.move(lapsed.id, "running", lease=Lease("b", 30_000))
    store.redis.delete(store.lease_key(lapsed.id))
    assert watchdog.round() == [lapsed.id] and sent == [(lapsed.id, {"num_epochs": 2})]
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round() == [], "a job already sent again waits for its new worker"
    assert queued.id not in [job_id for job_id, _ in sent]


def test_one_round_at_a_time_across_workers(store):
    sent = []
    first, second = (Watchdog(store, lambda job: sent.append(job.id) or [job.id], interval_s=5) for _ in range(2))
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running")  # no lease at all: lapsed
    assert first.round() == [job.id]
    assert second.round() == [] and sent == [job.id]


def test_a_lapsed_trial_is_sent_with_its_group_and_the_group_only_once(store):
    sent = []
    members = [store.create({"num_epochs": 1}, steps=1, sweep={"sweep_id": "s", "trial": t, "group": 0}) for t in range(3)]
    ids = [m.id for m in members]
    watchdog = Watchdog(store, lambda job: sent.append(job.id) or ids, interval_s=5)
    for job_id in ids:
        store.move(job_id, "running")  # no leases: the group's worker was lost
    assert len(watchdog.round()) == 1 and len(sent) == 1, "one sending covers the whole group"
