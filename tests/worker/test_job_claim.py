"""Claiming deliveries against a real Redis: start, resume, drop a duplicate, skip a finished job."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from contract.job_store import JobStore, Lease
from worker.job_claim import claim
from worker.retry import redis_outage
from worker.watchdog import takeover_key


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def retry(redis_server):
    return redis_outage(redis_server.url, 1)


def holder(pid: int, node: str | None = None) -> str:
    return json.dumps({"node": node or os.uname().nodename, "pid": pid, "attempt": 1, "nonce": "x"})


def test_a_queued_job_starts_and_takes_its_lease(store, retry):
    job = store.create({"num_epochs": 1}, steps=1)
    claimed = claim(store, job.id, 30, retry)
    assert claimed.outcome == "started" and claimed.attempts == 1
    got = store.get(job.id)
    assert got.status == "running" and got.phase == "starting" and got.worker.pid == os.getpid()
    assert store.redis.get(store.lease_key(job.id)).decode() == claimed.lease.owner
    assert 29_000 < store.redis.pttl(store.lease_key(job.id)) <= 30_000


def test_a_delivery_of_a_job_under_a_live_lease_is_dropped_and_not_an_attempt(store, retry):
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running", lease=Lease(holder(os.getpid(), node="another-node"), 30_000))
    store.add_attempt(job.id)
    assert claim(store, job.id, 30, retry).outcome == "duplicate"
    assert store.get(job.id).attempts == 1


def test_a_lapsed_lease_is_taken_over_as_a_resume(store, retry):
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running", lease=Lease(holder(os.getpid(), node="another-node"), 30_000))
    store.add_attempt(job.id)
    store.redis.set(takeover_key(store, job.id), 1)
    store.redis.delete(store.lease_key(job.id))  # its node died: nobody renews it
    claimed = claim(store, job.id, 30, retry)
    assert claimed.outcome == "resumed" and claimed.attempts == 2
    assert not store.redis.exists(takeover_key(store, job.id))


def test_the_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(store, retry):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running", lease=Lease(holder(int(dead.stdout)), 30_000))
    assert claim(store, job.id, 30, retry).outcome == "resumed"


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_finished_job_is_skipped(store, retry, status):
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running")
    store.move(job.id, status)
    assert claim(store, job.id, 30, retry).outcome == "skipped"
    assert store.get(job.id).status == status and not store.redis.exists(store.lease_key(job.id))
