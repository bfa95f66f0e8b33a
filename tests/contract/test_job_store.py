"""The job store against a real Redis."""

import threading
import time
import uuid

import pytest

from contract.fence import Fence, Step
from contract.job_store import JobStore, LeaseGrant, LeaseHeld, encode


@pytest.fixture
def store(redis_client) -> JobStore:
    return JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}")


def test_create_and_get_round_trip(store):
    job = store.create({"num_epochs": 4, "seed": 1}, steps=40)
    got = store.get(job.id)
    assert got == job
    assert got.status == "queued" and got.progress.steps == 40 and got.progress.epochs == 4
    assert got.created_at.endswith("Z")
    assert store.get(str(uuid.uuid4())) is None


def test_moves_are_compare_and_set(store):
    job = store.create({"num_epochs": 1}, steps=1)
    assert store.move(job.id, "running", only_from={"queued"}) == "queued"
    assert store.move(job.id, "cancelled", only_from={"queued"}) is None
    assert store.get(job.id).status == "running"
    assert store.move("missing", "running") is None


def test_the_state_machine_refuses_moves_out_of_a_final_status(store):
    job = store.create({"num_epochs": 1}, steps=1)
    assert store.move(job.id, "running", started_at="t") == "queued"
    assert store.move(job.id, "running") == "running"  # a resume after a lost worker
    assert store.move(job.id, "succeeded", finished_at="t2") == "running"
    for status in ("queued", "running", "failed", "cancelled", "succeeded"):
        assert store.move(job.id, status, error="late") is None
    got = store.get(job.id)
    assert got.status == "succeeded" and got.error is None and got.finished_at == "t2"


def test_narrowing_a_move_beyond_the_state_machine_is_a_bug(store):
    job = store.create({"num_epochs": 1}, steps=1)
    with pytest.raises(AssertionError):
        store.move(job.id, "queued", only_from={"running"})
    with pytest.raises(AssertionError):
        store.update(job.id, status="running")


def test_a_start_and_a_cancel_never_both_win(store):
    for _ in range(20):
        job = store.create({"num_epochs": 1}, steps=1)
        wins = []
        go = threading.Barrier(2)

        def attempt(status, job=job, wins=wins, go=go):
            go.wait()
            if store.move(job.id, status, only_from={"queued"}):
                wins.append(status)

        threads = [threading.Thread(target=attempt, args=(s,)) for s in ("running", "cancelled")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1 and store.get(job.id).status == wins[0]


def test_cancel_requests_only_reach_running_jobs(store):
    job = store.create({"num_epochs": 1}, steps=1)
    assert not store.request_cancel(job.id) and not store.cancel_requested(job.id)
    store.move(job.id, "running")
    assert store.request_cancel(job.id) and store.cancel_requested(job.id)


def test_listing_newest_first_with_filter_and_cursor(store):
    jobs = [store.create({"num_epochs": 1}, steps=1) for _ in range(7)]
    for job in jobs[::2]:
        store.move(job.id, "running")
    page, cursor = store.list(None, 3, None)
    assert [j.id for j in page] == [j.id for j in jobs[::-1][:3]]
    rest, end = store.list(None, 10, cursor)
    assert [j.id for j in rest] == [j.id for j in jobs[::-1][3:]] and end is None
    running, _ = store.list("running", 10, None)
    assert [j.id for j in running] == [j.id for j in jobs[::2][::-1]]
    first, cursor = store.list("queued", 2, None)
    second, _ = store.list("queued", 2, cursor)
    assert [j.id for j in first + second] == [j.id for j in jobs[1::2][::-1]]


def test_updates_keep_other_fields(store):
    job = store.create({"num_epochs": 2}, steps=20)
    store.update(job.id, progress={"epoch": 1, "epochs": 2, "step": 10, "steps": 20, "fraction": 0.5}, device="/CPU:0")
    got = store.get(job.id)
    assert got.progress.fraction == 0.5 and got.device == "/CPU:0" and got.params == {"num_epochs": 2}


def test_counts_and_status_indexes_follow_every_move(store):
    jobs = [store.create({"num_epochs": 1}, steps=1) for _ in range(4)]
    store.move(jobs[0].id, "running")
    store.move(jobs[1].id, "running")
    store.move(jobs[1].id, "succeeded")
    store.move(jobs[2].id, "cancelled")
    assert store.count_by_status() == {"queued": 1, "running": 1, "succeeded": 1, "failed": 0, "cancelled": 1}
    assert store.ids("running") == [jobs[0].id] and store.ids("queued") == [jobs[3].id]
    assert [j.id for j in store.list("succeeded", 10, None)[0]] == [jobs[1].id]


def test_finished_jobs_are_forgotten_after_their_retention(redis_client):
    store = JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}", retention_s=1)
    old, kept = store.create({"num_epochs": 1}, steps=1), store.create({"num_epochs": 1}, steps=1)
    store.move(old.id, "cancelled")
    assert redis_client.ttl(store.key(old.id)) > 0 and redis_client.ttl(store.key(kept.id)) == -1
    time.sleep(2.1)
    assert store.prune() == 1
    assert store.get(old.id) is None and store.get(kept.id) is not None
    assert [j.id for j in store.list(None, 10, None)[0]] == [kept.id]
    assert store.count_by_status()["cancelled"] == 0 and store.ids("cancelled") == []
    assert not redis_client.zcard(f"{store.prefix}:finished")


def test_a_move_with_a_lease_fails_while_another_owner_holds_it(store):
    job = store.create({"num_epochs": 1}, steps=1)
    assert store.move(job.id, "running", lease=LeaseGrant("a", 10_000)) == "queued"
    with pytest.raises(LeaseHeld):
        store.move(job.id, "running", only_from={"running"}, lease=LeaseGrant("b", 10_000))
    store.redis.delete(store.lease_key(job.id))  # lapsed
    assert store.move(job.id, "running", only_from={"running"}, lease=LeaseGrant("b", 10_000)) == "running"
    assert store.redis.get(store.lease_key(job.id)) == b"b" and 0 < store.redis.pttl(store.lease_key(job.id)) <= 10_000


def test_a_cancel_and_the_saving_phase_never_both_win(store):
    for _ in range(20):
        job = store.create({"num_epochs": 1}, steps=1)
        store.move(job.id, "running", lease=LeaseGrant("me", 30_000))
        fence = Fence("me", (store.lease_key(job.id),))
        go, wins = threading.Barrier(2), []

        def enter_saving(job_id: str, fence: Fence = fence) -> bool:
            step = Step(fence).hset_unless(store.key(job_id), encode({"phase": "saving"}), "cancel_requested", True)
            return store.fenced.run(step) == [1]

        def attempt(name, call, job=job, wins=wins, go=go):
            go.wait()
            if call(job.id):
                wins.append(name)

        threads = [
            threading.Thread(target=attempt, args=a) for a in (("cancel", store.request_cancel), ("save", enter_saving))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1
        got = store.get(job.id)
        assert (got.cancel_requested, got.phase == "saving") == ((True, False) if wins == ["cancel"] else (False, True))


def test_an_owners_listing_holds_only_its_jobs_with_the_status_filter_too(store):
    mine = [store.create({"num_epochs": 1}, steps=1, owner="token:a") for _ in range(3)]
    store.create({"num_epochs": 1}, steps=1, owner="token:b")
    store.move(mine[1].id, "running")
    assert [j.id for j in store.list(None, 10, None, owner="token:a")[0]] == [j.id for j in mine[::-1]]
    assert [j.id for j in store.list("running", 10, None, owner="token:a")[0]] == [mine[1].id]
    assert store.list("running", 10, None, owner="token:b")[0] == []


def owner_index_is_true(store: JobStore, owners: list[str]) -> None:
    """Each owner's status index holds exactly its jobs in that status, as their records say."""
    for owner in owners:
        mine = {m.decode() for m in store.redis.zrange(store.index_key(owner=owner), 0, -1)}
        for status in ("queued", "running", "succeeded", "failed", "cancelled"):
            indexed = {m.decode() for m in store.redis.zrange(store.index_key(status, owner), 0, -1)}
            assert indexed == {j for j in mine if store.get(j).status == status}, (owner, status)


def test_the_owner_status_index_follows_moves_fenced_ends_takeovers_and_pruning(redis_client):
    store = JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}", retention_s=1)
    owners = ["token:a", "token:b"]
    jobs = [store.create({"num_epochs": 1}, steps=1, owner=owners[i % 2]) for i in range(12)]
    store.create({"num_epochs": 1}, steps=1)  # no owner: in no owner's index
    owner_index_is_true(store, owners)
    for job in jobs[:8]:
        store.move(job.id, "running", lease=LeaseGrant(f"attempt-{job.id}", 30_000))
    store.move(jobs[8].id, "cancelled", only_from={"queued"})
    owner_index_is_true(store, owners)
    store.move(jobs[0].id, "running", only_from={"running"})  # a takeover: running again, nothing moves
    store.move(jobs[1].id, "failed", error="worker lost")  # the reconciler's end
    for job, status in zip(jobs[2:5], ("succeeded", "failed", "cancelled")):  # an attempt's fenced end
        fence = Fence(f"attempt-{job.id}", (store.lease_key(job.id),))
        assert store.fenced.run(
            Step(fence).move(store.key(job.id), job.id, status, encode({"phase": None})), release=True
        ) == [1]
    owner_index_is_true(store, owners)
    running, _ = store.list("running", 10, None, owner="token:a")
    assert {j.id for j in running} == {jobs[i].id for i in (0, 6)}
    time.sleep(2.1)
    assert store.prune() == 5
    owner_index_is_true(store, owners)
    assert not redis_client.zcard(store.index_key("succeeded", "token:a"))


def test_records_from_before_the_owner_status_index_are_indexed_once(store):
    old = [store.create({"num_epochs": 1}, steps=1, owner="token:a") for _ in range(5)]
    store.move(old[1].id, "running")
    store.move(old[2].id, "cancelled")
    for status in ("queued", "running", "cancelled"):  # as a store without the index left them
        store.redis.delete(store.index_key(status, "token:a"))
    assert not store.redis.exists(f"{store.prefix}:index:owner-status")
    assert store.build_owner_index(batch=2) == 5  # what the API does at start
    assert [j.id for j in store.list("running", 10, None, owner="token:a")[0]] == [old[1].id]
    assert [j.id for j in store.list("queued", 10, None, owner="token:a")[0]] == [old[4].id, old[3].id, old[0].id]
    owner_index_is_true(store, ["token:a"])
    store.redis.delete(store.index_key("queued", "token:a"))
    assert store.build_owner_index() == 0, "once per key prefix"


def test_without_a_start_the_first_listing_builds_the_owner_status_index(store):
    old = [store.create({"num_epochs": 1}, steps=1, owner="token:a") for _ in range(3)]
    store.move(old[0].id, "running")
    for status in ("queued", "running"):
        store.redis.delete(store.index_key(status, "token:a"))
    fresh = JobStore(store.redis, prefix=store.prefix)  # another process, whose start found Redis down
    assert [j.id for j in fresh.list("running", 10, None, owner="token:a")[0]] == [old[0].id]
    assert [j.id for j in fresh.list("queued", 10, None, owner="token:a")[0]] == [old[2].id, old[1].id]


def test_a_page_of_one_status_reads_about_limit_records_whatever_the_history(store):
    for _ in range(300):
        job = store.create({"num_epochs": 1}, steps=1, owner="token:a")
        store.move(job.id, "cancelled")
    running = store.create({"num_epochs": 1}, steps=1, owner="token:a")
    store.move(running.id, "running")
    read: list[int] = []
    get_many = store.get_many
    store.get_many = lambda ids: read.append(len(ids)) or get_many(ids)
    page, cursor = store.list("running", 1, None, owner="token:a")
    assert [j.id for j in page] == [running.id] and cursor is None and sum(read) == 1
