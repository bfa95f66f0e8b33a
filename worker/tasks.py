"""Celery tasks: thin, like web views; the work lives in worker.job_runner and worker.group_runner."""

import redis

from contract import tasks
from contract.job_store import JobStore
from contract.sweep_store import SweepStore
from worker.celery_app import app, settings
from worker.group_runner import run_group
from worker.job_runner import run_job


@app.task(name=tasks.TRAIN)
def train_job(job_id: str, params: dict) -> str:
    """Train the echo RNN for one job."""
    return run_job(job_store(), settings, job_id, params)


@app.task(name=tasks.TRAIN_GROUP)
def train_group(sweep_id: str, group: int, job_ids: list[str]) -> str:
    """Train one group of a sweep's trials together."""
    return run_group(SweepStore(job_store()), settings, sweep_id, group, job_ids)


def job_store() -> JobStore:
    """The job records, through a client of this process's own."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=30)
    return JobStore(client, settings.job_key_prefix, settings.job_retention_s)
