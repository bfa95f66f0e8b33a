"""A worker's part in the fair share, against a real Redis: an attempt that ended frees its unit's place and the
next unit goes; one that another attempt carries on keeps its place; and a broker away never fails the task."""

import pytest

from contract import tasks
from contract.dispatch import Dispatch
from contract.job_store import JobStore
from worker.attempt.dispatching import after_attempt


def one_process_two_jobs(store: JobStore) -> tuple[Dispatch, list[str], list[tasks.Message]]:
    """A node of one worker process running the first of two queued jobs (the second waits its turn)."""
    dispatch = Dispatch(store.redis, store.prefix)
    dispatch.heartbeat("node", 1, 30)
    ids = [store.create({"num_epochs": 1}, steps=1).id for _ in range(2)]
    dispatch.enqueue(None, [(tasks.train_job(j, {"num_epochs": 1}), [j]) for j in ids])
    sent: list[tasks.Message] = []
    assert dispatch.top_up(sent.append) == 1 and [m.task_id for m in sent] == ids[:1]
    return dispatch, ids, sent


@pytest.mark.parametrize("outcome", ["succeeded", "cancelled", "failed", "finished", "skipped"])
def test_an_attempt_that_ended_frees_its_place_for_the_next_unit(store, outcome):
    dispatch, ids, sent = one_process_two_jobs(store)
    assert after_attempt(store, sent.append, ids[0], outcome) == outcome
    assert [m.task_id for m in sent] == ids
    assert list(dispatch.in_flight()) == [ids[1]]


@pytest.mark.parametrize("outcome", ["duplicate", "fenced", "abandoned"])
def test_a_unit_another_attempt_carries_on_keeps_its_place(store, outcome):
    dispatch, ids, sent = one_process_two_jobs(store)
    assert after_attempt(store, sent.append, ids[0], outcome) == outcome
    assert [m.task_id for m in sent] == ids[:1], "no process is free for the next"
    assert list(dispatch.in_flight()) == [ids[0]]


def test_a_broker_away_does_not_fail_the_task_and_the_next_unit_waits_at_the_head_of_its_queue(store):
    dispatch, ids, _ = one_process_two_jobs(store)

    def away(message: tasks.Message) -> None:
        raise ConnectionError("the broker is away")

    assert after_attempt(store, away, ids[0], "succeeded") == "succeeded"
    assert dispatch.in_flight() == {} and [m.task_id for m in dispatch.waiting()] == ids[1:]
    sent: list[tasks.Message] = []
    assert dispatch.top_up(sent.append) == 1 and [m.task_id for m in sent] == ids[1:], "a later top-up sends it"
