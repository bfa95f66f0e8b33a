"""The fair-share dispatch against a real Redis: per-owner queues, the broker topped up to the free worker
processes, the owner served least lately first, units in flight freed when their jobs end."""

import time
import uuid
from collections.abc import Iterator

import pytest

from contract import tasks
from contract.dispatch import Dispatch
from contract.job_store import JobStore, LeaseGrant


@pytest.fixture
def store(redis_client) -> Iterator[JobStore]:
    store = JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield store
    for key in store.redis.scan_iter(f"{store.prefix}:*"):
        store.redis.delete(key)


@pytest.fixture
def dispatch(store) -> Dispatch:
    return Dispatch(store.redis, store.prefix)


class Broker:
    """What a top-up sends, in order (the send a Celery app's send_task would make)."""

    def __init__(self):
        self.sent: list[tasks.Message] = []

    def __call__(self, message: tasks.Message) -> None:
        self.sent.append(message)

    def ids(self) -> list[str]:
        return [m.task_id for m in self.sent]


def queue_jobs(store: JobStore, dispatch: Dispatch, owner: str | None, count: int) -> list[str]:
    """count plain jobs of owner, each queued as its own unit."""
    ids = []
    for _ in range(count):
        job = store.create({"num_epochs": 1}, steps=1, owner=owner)
        dispatch.enqueue(owner, [(tasks.train_job(job.id, job.params), [job.id])])
        ids.append(job.id)
    return ids


def run_and_end(store: JobStore, job_id: str) -> None:
    store.move(job_id, "running", lease=LeaseGrant("w", 30_000))
    store.move(job_id, "succeeded")
    store.redis.delete(store.lease_key(job_id))


def test_without_a_node_one_unit_waits_in_the_broker(store, dispatch):
    broker = Broker()
    first, second = queue_jobs(store, dispatch, None, 2)
    assert dispatch.top_up(broker) == 1 and dispatch.top_up(broker) == 0
    assert broker.sent == [tasks.train_job(first, {"num_epochs": 1})]
    assert [m.task_id for m in dispatch.waiting()] == [second] and store.redis.zcard(dispatch.pending_key) == 1


def test_the_broker_holds_as_many_units_as_the_nodes_have_worker_processes(store, dispatch):
    broker = Broker()
    ids = queue_jobs(store, dispatch, None, 6)
    dispatch.heartbeat("a", 2, 30)
    dispatch.heartbeat("b", 1, 30)
    assert dispatch.top_up(broker) == 3 and broker.ids() == ids[:3], "first come, first served for one owner"
    store.move(ids[0], "running", lease=LeaseGrant("w", 30_000))
    assert dispatch.top_up(broker) == 0, "a running unit still holds its process"
    store.redis.delete(store.lease_key(ids[0]))
    assert dispatch.top_up(broker) == 1, "a running job whose lease lapsed holds none (its node is gone)"
    dispatch.leave("a")
    run_and_end(store, ids[1])
    assert dispatch.top_up(broker) == 0, "one process left (b's), and units 3 and 4 wait in the broker for it"


def test_a_node_whose_word_lapsed_no_longer_counts(store, dispatch):
    broker = Broker()
    queue_jobs(store, dispatch, None, 4)
    dispatch.heartbeat("short", 3, 0.3)
    time.sleep(0.4)
    assert dispatch.top_up(broker) == 1


def test_the_owner_served_least_lately_goes_first(store, dispatch):
    broker = Broker()
    dispatch.heartbeat("one", 1, 30)
    sweep = [tasks.train_group("s", g, [f"missing-{g}"]) for g in range(4)]
    dispatch.enqueue("token:a", [(m, m.args[2]) for m in sweep])
    assert broker.ids() == [] and dispatch.top_up(broker) == 1 and broker.ids() == ["s-g0"]
    job_b = queue_jobs(store, dispatch, "token:b", 2)
    job_c = queue_jobs(store, dispatch, "token:c", 1)
    # s-g0's jobs are gone (ended): each top-up then frees its place and sends the next, one at a time.
    order = []
    for _ in range(6):
        assert dispatch.top_up(broker) == 1
        order.append(broker.ids()[-1])
        if order[-1] in job_b + job_c:
            run_and_end(store, order[-1])
    assert order == [job_b[0], job_c[0], "s-g1", job_b[1], "s-g2", "s-g3"], order
    assert dispatch.top_up(broker) == 0 and dispatch.waiting() == []


def test_a_unit_is_queued_once(store, dispatch):
    [job] = queue_jobs(store, dispatch, "token:a", 1)
    again = (tasks.train_job(job, {"num_epochs": 1}), [job])
    assert dispatch.enqueue("token:a", [again]) == 0
    dispatch.top_up(Broker())
    assert dispatch.enqueue("token:a", [again]) == 0, "in flight"
    assert dispatch.state(job)[0] == "inflight"


def test_a_withdrawn_unit_never_goes(store, dispatch):
    broker = Broker()
    first, second, third = queue_jobs(store, dispatch, "token:a", 3)
    assert dispatch.withdraw(second) and not dispatch.withdraw(second)
    dispatch.heartbeat("n", 5, 30)
    assert dispatch.top_up(broker) == 2 and broker.ids() == [first, third]
    assert not store.redis.exists(f"{dispatch.keys}:queue:token:a")
    assert store.redis.zcard(f"{dispatch.keys}:owners") == 0


def test_units_a_broker_refused_go_back_first_in_their_order(store, dispatch):
    ids = queue_jobs(store, dispatch, "token:a", 3)
    other = queue_jobs(store, dispatch, "token:b", 1)
    dispatch.heartbeat("n", 4, 30)

    def refusing(message):
        raise ConnectionError("the broker is away")

    with pytest.raises(ConnectionError):
        dispatch.top_up(refusing)
    assert dispatch.in_flight() == {}
    broker = Broker()
    assert dispatch.top_up(broker) == 4 and sorted(broker.ids()) == sorted(ids + other)
    assert [i for i in broker.ids() if i in ids] == ids, "each owner's units in their order"


def test_a_unit_sent_outside_its_turn_leaves_its_queue_and_is_in_flight(store, dispatch):
    first, second = queue_jobs(store, dispatch, "token:a", 2)
    dispatch.sent("token:a", tasks.train_job(second, {"num_epochs": 1}), [second])
    assert dispatch.state(second)[0] == "inflight" and [m.task_id for m in dispatch.waiting()] == [first]
    dispatch.finished(second)
    assert dispatch.state(second) == (None, None)


def test_without_a_node_a_running_unit_does_not_keep_the_next_from_the_broker(store, dispatch):
    broker = Broker()
    first, second, _third = queue_jobs(store, dispatch, None, 3)
    assert dispatch.top_up(broker) == 1
    store.move(first, "running", lease=LeaseGrant("w", 30_000))  # taken by a node that has gone since
    assert dispatch.top_up(broker) == 1 and broker.ids() == [first, second]
    assert dispatch.top_up(broker) == 0, "one waits in the broker"
