"""Fixtures of the attempt path's tests: a job store and a sweep store under a prefix of the test's own."""

import uuid

import pytest

from contract.job_store import JobStore
from contract.sweep_store import SweepStore


@pytest.fixture
def store(redis_client) -> JobStore:
    """A job store of the test's own on the suite's Redis."""
    return JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}", retention_s=60)


@pytest.fixture
def sweeps(store) -> SweepStore:
    """The sweep store over it."""
    return SweepStore(store)
