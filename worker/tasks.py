"""Celery tasks: thin, like web views; the work lives in worker.attempt."""

import redis

from contract import tasks
from contract.job_store import JobStore
from worker.attempt.dispatching import after_attempt, top_up
from worker.attempt.run import finish_sweep, run_attempt
from worker.attempt.unit import Unit
from worker.celery_app import app, settings


@app.task(name=tasks.TRAIN)
def train_job(job_id: str, params: dict) -> str:
    """Train the echo RNN for one job, then send the units that go next."""
    store = job_store()
    return after_attempt(store, _send, job_id, run_attempt(store, settings, Unit([job_id])))


@app.task(name=tasks.TRAIN_GROUP)
def train_group(sweep_id: str, group: int, job_ids: list[str]) -> str:
    """Train one group of a sweep's trials together, then send the units that go next."""
    store = job_store()
    outcome = run_attempt(store, settings, Unit(job_ids, sweep_id, group))
    return after_attempt(store, _send, tasks.group_name(sweep_id, group), outcome)


@app.task(name=tasks.FINISH_SWEEP)
def end_sweep(sweep_id: str) -> str:
    """End a sweep whose trials have all ended (a tpe search with trials left: queue its next batch), then send
    the units that go next."""
    store = job_store()
    return top_up(store, _send, finish_sweep(store, settings, sweep_id))


@app.task(name=tasks.BACKFILL_SERVING)
def backfill_serving() -> dict:
    """Add the ONNX graph the API serves to every version registered before workers wrote it."""
    from worker.tracking.backfill import backfill

    return backfill(job_store().redis, settings)


def _send(message: tasks.Message) -> None:
    tasks.send(app, message)


def job_store() -> JobStore:
    """The job records, through a client of this process's own; its timeouts well under a lease's TTL."""
    timeout = min(5.0, settings.lease_ttl_s / 4)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
    return JobStore(client, settings.job_key_prefix, settings.job_retention_s)
