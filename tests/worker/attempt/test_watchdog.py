"""The watchdog and reconciler against a real Redis: lapsed leases and lost messages sent again once, live ones
left, sweeps whose trials all ended finished, one round at a time, and no error ends it."""

import time
from collections.abc import Callable
from typing import Any

import pytest

from contract import tasks
from contract.dispatch import Dispatch
from contract.job_store import JobStore, LeaseGrant
from contract.sweep import SweepRequest
from contract.sweep_store import SweepStore
from worker.attempt.watchdog import BATCH, Watchdog


def failing_first(attempts: list) -> Callable[[Any], None]:
    """A broker that records every send and refuses the first."""

    def send(message: Any) -> None:
        attempts.append(message)
        if len(attempts) == 1:
            raise ConnectionError("the broker is away")

    return send


def counting(sent: list) -> Callable[[Any], None]:
    return lambda message: sent.append(message)


def test_only_running_jobs_whose_lease_lapsed_are_sent_again_and_only_once(store):
    sent: list[tasks.Message] = []
    watchdog = Watchdog(store, counting(sent), interval_s=0.1)
    alive, lapsed, _queued = (store.create({"num_epochs": n}, steps=1) for n in (1, 2, 3))
    store.move(alive.id, "running", lease=LeaseGrant("a", 30_000))
    store.move(lapsed.id, "running", lease=LeaseGrant("b", 30_000))
    store.redis.delete(store.lease_key(lapsed.id))
    assert watchdog.round().taken_over == [lapsed.id] and sent == [tasks.train_job(lapsed.id, {"num_epochs": 2})]
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round().taken_over == [], "a job already sent again waits for its new worker"
    assert store.redis.hget(f"{store.prefix}:reconciler", "taken_over") == b"1"


def test_one_round_at_a_time_across_workers(store):
    sent: list[tasks.Message] = []
    first, second = (Watchdog(store, counting(sent), interval_s=5) for _ in range(2))
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running")  # no lease at all: lapsed
    assert first.round().taken_over == [job.id]
    assert second.round().taken_over == [] and len(sent) == 1


def test_a_lapsed_trial_is_sent_with_its_group_and_the_group_only_once(store):
    sent: list[tasks.Message] = []
    sweeps = SweepStore(store)
    request = SweepRequest.model_validate({"params": {"num_epochs": 1}, "grid": {"seed": [1, 2, 3]}})
    sweep = sweeps.create(request, request.trials(), [[0, 1, 2]])
    watchdog = Watchdog(store, counting(sent), interval_s=5)
    for trial in sweep.trials:
        store.move(trial.job_id, "running")  # no leases: the group's worker was lost
    assert len(watchdog.round().taken_over) == 1
    assert sent == [tasks.train_group(sweep.id, 0, [t.job_id for t in sweep.trials])], "one sending covers the group"


def test_a_queued_job_whose_message_was_lost_is_sent_again_past_the_bound_once(store):
    sent: list[tasks.Message] = []
    watchdog = Watchdog(store, counting(sent), interval_s=5, reconcile_after_s=1)
    job = store.create({"num_epochs": 1}, steps=1)
    assert watchdog.round().resent == [], "young: its message may be waiting in the queue"
    time.sleep(1.2)
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round().resent == [job.id] and sent == [tasks.train_job(job.id, {"num_epochs": 1})]
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round().resent == [], "not again within the bound"


def test_a_sweep_whose_trials_all_ended_is_sent_to_be_finished(store):
    sent: list[tasks.Message] = []
    sweeps = SweepStore(store)
    request = SweepRequest.model_validate({"params": {"num_epochs": 1}, "grid": {"seed": [1, 2]}})
    sweep = sweeps.create(request, request.trials(), [[0, 1]])
    sweeps.move(sweep.id, "running")
    watchdog = Watchdog(store, counting(sent), interval_s=5, reconcile_after_s=60)
    store.move(sweep.trials[0].job_id, "running")
    store.move(sweep.trials[0].job_id, "succeeded")
    assert watchdog.round().sweeps_finished == [], "a trial is still queued"
    store.move(sweep.trials[1].job_id, "running")
    store.move(sweep.trials[1].job_id, "failed")
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round().sweeps_finished == [sweep.id] and sent[-1] == tasks.finish_sweep(sweep.id)
    sweeps.move(sweep.id, "succeeded")
    assert not store.redis.sismember(sweeps.active_key, sweep.id)


def test_a_failed_send_is_counted_survived_and_tried_again(store):
    attempts: list[tasks.Message] = []
    flaky = failing_first(attempts)

    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running")
    watchdog = Watchdog(store, flaky, interval_s=0.2).start()
    try:
        deadline = time.monotonic() + 10
        while len(attempts) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(attempts) == 2 and watchdog.alive, "the round after the error sends it"
        assert int(store.redis.hget(f"{store.prefix}:reconciler", "errors")) >= 1
    finally:
        watchdog.stop()


def queue(store: JobStore, owner: str | None = None) -> str:
    """A job queued in its owner's pending queue, as the API queues it."""
    job = store.create({"num_epochs": 1}, steps=1, owner=owner)
    Dispatch(store.redis, store.prefix).enqueue(owner, [(tasks.train_job(job.id, job.params), [job.id])])
    return job.id


def test_a_node_announces_its_processes_and_each_round_tops_the_broker_up(store):
    sent: list[tasks.Message] = []
    ids = [queue(store) for _ in range(3)]
    watchdog = Watchdog(store, counting(sent), interval_s=5, processes=2)
    watchdog.round()
    assert [m.task_id for m in sent] == ids[:2], "as many units as the node has processes"
    store.redis.delete(f"{store.prefix}:watchdog")
    watchdog.round()
    assert len(sent) == 2, "both still waiting for a process"
    watchdog.stop()
    assert store.redis.zcard(f"{store.prefix}:dispatch:nodes") == 0


def test_a_unit_waiting_its_turn_past_the_bound_is_not_sent_again(store):
    sent: list[tasks.Message] = []
    running, _waiting = queue(store, "token:a"), queue(store, "token:b")
    watchdog = Watchdog(store, counting(sent), interval_s=5, reconcile_after_s=1, processes=1)
    watchdog.round()
    store.move(running, "running", lease=LeaseGrant("w", 30_000))
    time.sleep(1.2)
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round().resent == [] and [m.task_id for m in sent] == [running]


def test_a_unit_sent_whose_message_was_lost_is_sent_again_past_the_bound_once(store):
    sent: list[tasks.Message] = []
    job_id = queue(store)
    watchdog = Watchdog(store, counting(sent), interval_s=5, reconcile_after_s=1)
    watchdog.round()
    assert [m.task_id for m in sent] == [job_id]
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round().resent == [], "young: its message may be waiting in the queue"
    time.sleep(1.2)
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round().resent == [job_id] and [m.task_id for m in sent] == [job_id, job_id]
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round().resent == [], "not again within the bound"


def test_a_group_sent_past_the_bound_with_a_trial_under_a_live_lease_is_not_sent_again(store):
    """Its worker is on it (a trial claimed, another still queued): its message was not lost."""
    sent: list[tasks.Message] = []
    sweeps = SweepStore(store)
    request = SweepRequest.model_validate({"params": {"num_epochs": 1}, "grid": {"seed": [1, 2]}})
    sweep = sweeps.create(request, request.trials(), [[0, 1]])
    jobs = [t.job_id for t in sweep.trials]
    Dispatch(store.redis, store.prefix).enqueue(None, [(tasks.train_group(sweep.id, 0, jobs), jobs)])
    watchdog = Watchdog(store, counting(sent), interval_s=5, reconcile_after_s=1)
    watchdog.round()
    assert sent == [tasks.train_group(sweep.id, 0, jobs)]
    store.move(jobs[0], "running", lease=LeaseGrant("w", 30_000))
    time.sleep(1.2)
    store.redis.delete(f"{store.prefix}:watchdog")
    done = watchdog.round()
    assert (done.resent, done.taken_over, len(sent)) == ([], [], 1)
    assert tasks.group_name(sweep.id, 0) in Dispatch(store.redis, store.prefix).in_flight(), "still in flight"


def test_a_round_takes_over_at_most_a_batch_and_the_next_round_the_rest(store):
    sent: list[tasks.Message] = []
    ids = [store.create({"num_epochs": 1}, steps=1).id for _ in range(BATCH + 30)]
    for job_id in ids:
        store.move(job_id, "running")  # no leases: their workers were lost
    watchdog = Watchdog(store, counting(sent), interval_s=5)
    first = watchdog.round().taken_over
    assert len(first) == BATCH and len(sent) == BATCH
    store.redis.delete(f"{store.prefix}:watchdog")
    second = watchdog.round().taken_over  # the batch sent again waits for its workers; the rest need not
    assert sorted(first + second) == sorted(ids) and len(sent) == BATCH + 30
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round().taken_over == [], "each is sent once per guard"


def test_a_round_stops_at_its_deadline_and_the_next_goes_on(store):
    """A slow broker: the round ends within about its interval, leaving the rest to the next."""
    sent: list[tasks.Message] = []

    def slow(message: tasks.Message) -> None:
        time.sleep(0.3)
        sent.append(message)

    for _ in range(8):
        store.move(store.create({"num_epochs": 1}, steps=1).id, "running")
    watchdog = Watchdog(store, slow, interval_s=1)
    started = time.monotonic()
    first = watchdog.round().taken_over
    assert time.monotonic() - started < 2.0 and 2 <= len(first) < 8
    store.redis.delete(f"{store.prefix}:watchdog")
    assert set(watchdog.round().taken_over).isdisjoint(first), "the next round goes on with the others"


def test_a_sweep_whose_finish_could_not_be_sent_is_sent_at_the_next_round_unless_one_is_finishing_it(store):
    attempts: list[tasks.Message] = []
    flaky = failing_first(attempts)

    sweeps = SweepStore(store)
    request = SweepRequest.model_validate({"params": {"num_epochs": 1}, "grid": {"seed": [1]}})
    sweep = sweeps.create(request, request.trials(), [[0]])
    store.move(sweep.trials[0].job_id, "running")
    store.move(sweep.trials[0].job_id, "failed")
    watchdog = Watchdog(store, flaky, interval_s=5, reconcile_after_s=60)
    with pytest.raises(ConnectionError):
        watchdog.round()
    store.redis.delete(f"{store.prefix}:watchdog")
    store.redis.set(sweeps.finish_lease_key(sweep.id), "a finisher", px=30_000)
    assert watchdog.round().sweeps_finished == [], "being finished now"
    store.redis.delete(f"{store.prefix}:watchdog", sweeps.finish_lease_key(sweep.id))
    assert watchdog.round().sweeps_finished == [sweep.id]
    assert attempts == [tasks.finish_sweep(sweep.id)] * 2
    store.redis.delete(f"{store.prefix}:watchdog")
    assert watchdog.round().sweeps_finished == [], "not again within the bound"
    assert store.redis.hget(f"{store.prefix}:reconciler", "sweeps_finished") == b"1"
