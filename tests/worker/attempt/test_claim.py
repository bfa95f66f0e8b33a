"""Claiming deliveries against a real Redis: start, resume, drop a duplicate, skip a finished job, a group under one token."""

import json
import os
import subprocess
import sys

import pytest

from contract.job_store import LeaseGrant
from worker.attempt.claim import claim
from worker.retry import redis_outage


@pytest.fixture
def retry(redis_server):
    return redis_outage(redis_server.url, 1)


def holder(pid: int, node: str | None = None) -> str:
    return json.dumps({"node": node or os.uname().nodename, "pid": pid, "attempt": 1, "nonce": "x"})


def test_a_queued_job_starts_and_takes_its_lease(store, retry):
    job = store.create({"num_epochs": 1}, steps=1)
    claimed = claim(store, [job.id], 30, retry)
    assert claimed.job_ids == [job.id] and not claimed.resumed and claimed.attempts == 1
    got = store.get(job.id)
    assert got.status == "running" and got.phase == "starting" and got.worker.pid == os.getpid()
    assert store.redis.get(store.lease_key(job.id)).decode() == claimed.fence.token
    assert claimed.fence.leases == (store.lease_key(job.id),)
    assert 29_000 < store.redis.pttl(store.lease_key(job.id)) <= 30_000


def test_a_delivery_of_a_job_under_a_live_lease_is_dropped_and_not_an_attempt(store, retry):
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running", lease=LeaseGrant(holder(os.getpid(), node="another-node"), 30_000))
    store.redis.hincrby(store.key(job.id), "attempts", 1)
    assert claim(store, [job.id], 30, retry).duplicate
    assert store.get(job.id).attempts == 1


def test_a_lapsed_lease_is_taken_over_as_a_resume(store, retry):
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running", lease=LeaseGrant(holder(os.getpid(), node="another-node"), 30_000))
    store.redis.hincrby(store.key(job.id), "attempts", 1)
    store.redis.set(store.takeover_key(job.id), 1)
    store.redis.delete(store.lease_key(job.id))  # its node died: nobody renews it
    claimed = claim(store, [job.id], 30, retry)
    assert claimed.resumed and claimed.attempts == 2
    assert not store.redis.exists(store.takeover_key(job.id))


def test_the_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(store, retry):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running", lease=LeaseGrant(holder(int(dead.stdout)), 30_000))
    assert claim(store, [job.id], 30, retry).resumed


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_finished_job_is_skipped(store, retry, status):
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running")
    store.move(job.id, status)
    claimed = claim(store, [job.id], 30, retry)
    assert claimed.fence is None and not claimed.job_ids and not claimed.duplicate
    assert store.get(job.id).status == status and not store.redis.exists(store.lease_key(job.id))


def test_a_group_is_claimed_under_one_token_skipping_its_finished_trials(store, retry):
    jobs = [store.create({"num_epochs": 1}, steps=1) for _ in range(3)]
    store.move(jobs[1].id, "cancelled")  # cancelled while queued
    claimed = claim(store, [j.id for j in jobs], 30, retry)
    assert claimed.job_ids == [jobs[0].id, jobs[2].id]
    assert {store.redis.get(store.lease_key(j)).decode() for j in claimed.job_ids} == {claimed.fence.token}


def test_a_group_with_one_trial_under_a_live_lease_elsewhere_is_a_duplicate(store, retry):
    jobs = [store.create({"num_epochs": 1}, steps=1) for _ in range(2)]
    store.move(jobs[1].id, "running", lease=LeaseGrant(holder(os.getpid(), node="another-node"), 30_000))
    assert claim(store, [j.id for j in jobs], 30, retry).duplicate
