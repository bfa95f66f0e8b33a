"""run_attempt, driven directly against a real Redis and MLflow server: what each way an attempt stops leaves
behind (its outcome, its jobs' records, their leases and runs), and the sweep it ends when its group is the last."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from contract.job_store import JobStore, LeaseGrant
from contract.sweep import SweepRequest
from contract.sweep_record import Sweep
from contract.sweep_store import SweepStore
from tests.support import RedisServer
from worker.attempt import runs, sweep_end
from worker.attempt.run import finish_sweep, run_attempt
from worker.attempt.unit import Unit
from worker.settings import WorkerSettings
from worker.tracking.tracked_run import TrackedRun

TINY = {"num_epochs": 1, "total_series_length": 2_000, "seed": 2}  # about 0.1 s of training


@pytest.fixture
def own(settings) -> WorkerSettings:
    """The settings with a registered model of the test's own (the stack's champion is left alone)."""
    return settings.model_copy(update={"registered_model": f"unit-{uuid.uuid4().hex[:8]}", "lease_ttl_s": 5})


def new_job(store: JobStore, **params: Any) -> str:
    return store.create({**TINY, **params}, steps=10).id


def new_sweep(sweeps: SweepStore, groups: list[list[int]]) -> Sweep:
    trials = sum(len(g) for g in groups)
    body = SweepRequest.model_validate(
        {"params": TINY, "grid": {"learning_rate": [0.3 + i / 10 for i in range(trials)]}}
    )
    return sweeps.create(body, body.trials(), groups)


def group(sweep: Sweep, g: int) -> Unit:
    return Unit([sweep.trials[t].job_id for t in sweep.groups[g]], sweep.id, g)


def after_opening_runs(monkeypatch, then: Callable[[list[TrackedRun]], None]) -> list[TrackedRun]:
    """Runs the real open_runs, then then(runs): something that happens to the attempt once its runs are open."""
    opened: list[TrackedRun] = []
    real = runs.open_runs

    def open_then(*args: Any, **kwargs: Any) -> list[TrackedRun]:
        opened.extend(real(*args, **kwargs))
        then(opened)
        return opened

    monkeypatch.setattr(runs, "open_runs", open_then)
    return opened


def test_a_delivery_of_a_job_under_another_attempts_live_lease_is_dropped_as_a_duplicate(store, own):
    job_id = new_job(store)
    store.move(job_id, "running", lease=LeaseGrant("another attempt", 30_000))
    assert run_attempt(store, own, Unit([job_id])) == "duplicate"
    job = store.get(job_id)
    assert (job.status, job.attempts, job.mlflow) == ("running", 0, None), "not counted as an attempt; nothing written"
    assert store.redis.get(store.lease_key(job_id)) == b"another attempt"


def test_a_job_cancelled_while_queued_is_skipped(store, own):
    job_id = new_job(store)
    assert store.cancel_queued([job_id]) == [True]
    assert run_attempt(store, own, Unit([job_id])) == "skipped"
    assert store.get(job_id).status == "cancelled" and not store.redis.exists(store.lease_key(job_id))


def test_groups_cancelled_while_queued_count_as_finished_and_the_last_ends_the_sweep(sweeps, store, own):
    sweep = new_sweep(sweeps, [[0], [1]])
    sweeps.request_cancel(sweep.id)
    store.cancel_queued([t.job_id for t in sweep.trials])
    assert run_attempt(store, own, group(sweep, 0)) == "skipped"
    assert sweeps.get(sweep.id).status == "queued", "a group is left"
    assert run_attempt(store, own, group(sweep, 0)) == "skipped"
    assert sweeps.get(sweep.id).status == "queued", "a group delivered twice counts once"
    assert run_attempt(store, own, group(sweep, 1)) == "skipped"
    assert sweeps.get(sweep.id).status == "cancelled"


def test_a_claim_that_cannot_reach_redis_is_abandoned_to_the_watchdog(own, bare_redis, closed_port):
    away = JobStore(bare_redis(closed_port), prefix="away")
    unreachable = own.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port}/0", "redis_retry_s": 0})
    assert run_attempt(away, unreachable, Unit(["a-job"])) == "abandoned"


def test_a_failure_ends_the_job_failed_with_its_reason_its_run_failed_and_its_lease_released(store, own, client):
    """A job whose worker was lost as often as allowed fails at its next attempt, before training."""
    job_id = new_job(store)
    store.update(job_id, attempts=1)
    assert run_attempt(store, own.model_copy(update={"max_worker_losses": 1}), Unit([job_id])) == "failed"
    job = store.get(job_id)
    assert job.status == "failed" and job.error.startswith("WorkerLost: the worker running this job was lost 1 times")
    assert (job.attempts, job.phase, job.finished_at is not None) == (2, None, True)
    assert not store.redis.exists(store.lease_key(job_id))
    assert client.get_run(job.mlflow.run_id).info.status == "FAILED"


def test_a_failed_group_that_is_the_last_ends_its_sweep_failed(sweeps, store, own, client):
    sweep = new_sweep(sweeps, [[0, 1]])
    for trial in sweep.trials:
        store.update(trial.job_id, attempts=1)
    assert run_attempt(store, own.model_copy(update={"max_worker_losses": 1}), group(sweep, 0)) == "failed"
    assert {store.get(t.job_id).status for t in sweep.trials} == {"failed"}
    ended = sweeps.get(sweep.id)
    assert (ended.status, ended.error) == ("failed", "no trial succeeded")
    parent = client.get_run(ended.mlflow.run_id)
    assert parent.info.status == "FAILED"
    for trial in sweep.trials:
        child = client.get_run(store.get(trial.job_id).mlflow.run_id)
        assert (child.info.status, child.data.tags["mlflow.parentRunId"]) == ("FAILED", parent.info.run_id)


def test_an_attempt_whose_lease_is_taken_over_writes_nothing_more_and_leaves_its_run_open(
    store, own, client, monkeypatch
):
    job_id = new_job(store)
    opened = after_opening_runs(
        monkeypatch, lambda _: store.redis.set(store.lease_key(job_id), "the attempt that took over", px=30_000)
    )
    assert run_attempt(store, own, Unit([job_id])) == "fenced"
    job = store.get(job_id)
    assert (job.status, job.mlflow, job.attempts) == ("running", None, 1), "its runs' links were refused"
    assert store.redis.get(store.lease_key(job_id)) == b"the attempt that took over"
    assert client.get_run(opened[0].run_id).info.status == "RUNNING", "left to the attempt that took over"


def test_an_attempt_that_loses_redis_past_its_limit_leaves_its_run_open_for_another_worker(
    own, client, monkeypatch, tmp_path
):
    server = RedisServer(tmp_path).start()
    try:
        store = JobStore(redis.Redis.from_url(server.url), prefix="away")
        job_id = new_job(store)
        opened = after_opening_runs(monkeypatch, lambda _: server.stop())
        settings = own.model_copy(update={"redis_url": server.url, "redis_retry_s": 0})
        assert run_attempt(store, settings, Unit([job_id])) == "abandoned"
        assert client.get_run(opened[0].run_id).info.status == "RUNNING"
    finally:
        server.stop()


def test_a_job_trains_publishes_its_version_and_ends_succeeded(store, own, client):
    job_id = new_job(store)
    assert run_attempt(store, own, Unit([job_id])) == "succeeded"
    job = store.get(job_id)
    assert (job.status, job.phase, job.error, job.attempts) == ("succeeded", None, None, 1)
    assert job.evaluation is not None and job.progress.fraction == 1.0
    assert job.model is not None and (job.model.name, job.model.version) == (own.registered_model, "1")
    assert client.get_run(job.mlflow.run_id).info.status == "FINISHED"
    assert not store.redis.exists(store.lease_key(job_id)) and not store.redis.exists(store.checkpoint_key(job_id))


def test_a_group_whose_sweep_was_cancelled_while_it_trained_ends_cancelled_and_so_does_the_sweep(
    sweeps, store, own, client
):
    sweep = new_sweep(sweeps, [[0, 1]])
    sweeps.request_cancel(sweep.id)
    for trial in sweep.trials:
        store.update(trial.job_id, cancel_requested=True)  # as the cancel of a sweep whose group was sent
    assert run_attempt(store, own, group(sweep, 0)) == "cancelled"
    trials = [store.get(t.job_id) for t in sweep.trials]
    assert [(t.status, t.evaluation, t.model) for t in trials] == [("cancelled", None, None)] * 2
    assert {client.get_run(t.mlflow.run_id).info.status for t in trials} == {"KILLED"}
    ended = sweeps.get(sweep.id)
    assert (ended.status, ended.best) == ("cancelled", None)
    assert client.get_run(ended.mlflow.run_id).info.status == "KILLED"


def test_a_trial_cancelled_while_its_group_trained_ends_cancelled_beside_the_others(sweeps, store, own, client):
    """The group's mixed end (finished); being the sweep's only group, it ends the sweep with the best one registered."""
    sweep = new_sweep(sweeps, [[0, 1]])
    store.update(sweep.trials[1].job_id, cancel_requested=True)
    assert run_attempt(store, own, group(sweep, 0)) == "finished"
    assert [store.get(t.job_id).status for t in sweep.trials] == ["succeeded", "cancelled"]
    ended = sweeps.get(sweep.id)
    assert ended.status == "succeeded" and ended.best.trial == 0 and ended.best.model.name == own.registered_model
    assert client.get_run(store.get(sweep.trials[1].job_id).mlflow.run_id).info.status == "KILLED"


def test_finishing_a_sweep_whose_trials_have_not_all_ended_does_nothing(sweeps, store, own):
    sweep = new_sweep(sweeps, [[0]])
    assert finish_sweep(store, own, sweep.id) == "nothing to do"
    assert sweeps.get(sweep.id).status == "queued"


def test_a_sweep_that_cannot_be_finished_now_is_left_for_the_reconciler_to_finish_later(
    sweeps, store, own, closed_port, fail_fast_mlflow
):
    sweep = new_sweep(sweeps, [[0]])
    sweep_end.parent_run(sweeps, own, sweep.id)
    sweeps.move(sweep.id, "running")
    store.move(sweep.trials[0].job_id, "running")
    store.move(sweep.trials[0].job_id, "failed")
    away = own.model_copy(update={"mlflow_tracking_uri": f"http://127.0.0.1:{closed_port}", "mlflow_retry_s": 0})
    assert finish_sweep(store, away, sweep.id) == "nothing to do"
    assert sweeps.get(sweep.id).status == "running"
    assert not store.redis.exists(sweeps.finish_lease_key(sweep.id)), "its lease let go for the next finisher"
    assert finish_sweep(store, own, sweep.id) == "failed"
