"""Idempotency-Key on POST /jobs: a submission sent again makes no second job."""

import secrets
import threading
import time
import uuid

import pytest
import requests

from contract.clock import now
from contract.job_store import JobStore
from service.app import create_app
from service.idempotency import HEADER, REPLAYED, IdempotencyStore
from service.problems import Problem
from tests.service.test_auth import OTHER, TINY, TOKEN, bearer, derive, problem


@pytest.fixture
def jobs(redis_client) -> JobStore:
    return JobStore(redis_client)


@pytest.fixture
def created(jobs):
    ids: set[str] = set()
    yield ids
    for job_id in ids:
        jobs.move(job_id, "cancelled", only_from={"queued"}, finished_at=now())


def count(jobs: JobStore) -> int:
    return jobs.redis.zcard("echo-rnn:jobs")


def key() -> dict:
    return {HEADER: str(uuid.uuid4())}


def test_the_same_key_and_body_give_the_same_job_once(client, jobs, created):
    headers, before = key(), count(jobs)
    first = client.post("/jobs", json=TINY, headers=headers)
    assert first.status_code == 202 and REPLAYED not in first.headers
    job = first.get_json()
    created.add(job["id"])
    for body in (TINY, {**TINY, "state_size": 4, "device": "auto"}):  # the same parameters, defaults spelt out
        again = client.post("/jobs", json=body, headers=headers)
        assert again.status_code == 200, again.get_data(as_text=True)
        assert again.headers[REPLAYED] == "true"
        assert again.headers["Location"] == first.headers["Location"]
        assert again.get_json()["id"] == job["id"]
        assert again.get_json()["params"] == job["params"], "the replay keeps the seed the first request drew"
    assert count(jobs) == before + 1


def test_the_same_key_with_another_body_is_refused(client, jobs, created):
    headers = key()
    created.add(client.post("/jobs", json=TINY, headers=headers).get_json()["id"])
    before = count(jobs)
    body = problem(client.post("/jobs", json={**TINY, "num_epochs": 2}, headers=headers), 422)
    assert body["title"] == "Idempotency-Key reused with a different body"
    assert body["errors"] == [{"field": HEADER, "message": "already used with a different body", "location": "header"}]
    problem(client.post("/jobs", json={**TINY, "seed": 7}, headers=headers), 422)
    assert count(jobs) == before


def test_an_invalid_body_reserves_nothing(client, created):
    headers = key()
    problem(client.post("/jobs", json={"num_epochs": 0}, headers=headers), 422)
    resp = client.post("/jobs", json=TINY, headers=headers)
    assert resp.status_code == 202
    created.add(resp.get_json()["id"])


def test_different_keys_or_no_key_make_different_jobs(client, created):
    ids = [client.post("/jobs", json=TINY, headers=key()).get_json()["id"] for _ in range(2)]
    ids += [client.post("/jobs", json=TINY).get_json()["id"] for _ in range(2)]
    created.update(ids)
    assert len(set(ids)) == 4


@pytest.mark.parametrize("bad", ["", "k" * 256, "tab\there"])
def test_a_malformed_key_names_the_header(client, jobs, bad):
    before = count(jobs)
    body = problem(client.post("/jobs", json=TINY, headers={HEADER: bad}), 422)
    assert [e["field"] for e in body["errors"]] == [HEADER] and body["errors"][0]["location"] == "header"
    assert count(jobs) == before


def test_the_longest_key_is_fine(client, created):
    resp = client.post("/jobs", json=TINY, headers={HEADER: "k" * 255})
    assert resp.status_code == 202
    created.add(resp.get_json()["id"])


def test_keys_are_kept_per_token(settings, created):
    client = create_app(derive(settings, api_tokens=[TOKEN, OTHER])).test_client()
    headers = key()
    mine = client.post("/jobs", json=TINY, headers={**headers, **bearer(TOKEN)})
    theirs = client.post("/jobs", json={**TINY, "num_epochs": 2}, headers={**headers, **bearer(OTHER)})
    assert mine.status_code == theirs.status_code == 202
    created.update({mine.get_json()["id"], theirs.get_json()["id"]})
    assert mine.get_json()["id"] != theirs.get_json()["id"]
    again = client.post("/jobs", json=TINY, headers={**headers, **bearer(TOKEN)})
    assert again.status_code == 200 and again.get_json()["id"] == mine.get_json()["id"]


def concurrently(send, n: int = 10) -> list[tuple[int, str]]:
    """send() from n threads released at once; their (status, job id)."""
    barrier, results, lock = threading.Barrier(n), [], threading.Lock()

    def one():
        barrier.wait()
        status, job_id = send()
        with lock:
            results.append((status, job_id))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == n
    return results


def test_concurrent_duplicates_make_exactly_one_job(settings, jobs, created):
    app, headers, before = create_app(settings), key(), count(jobs)

    def send():
        resp = app.test_client().post("/jobs", json=TINY, headers=headers)
        return resp.status_code, resp.get_json()["id"]

    results = concurrently(send)
    created.update(job_id for _, job_id in results)
    assert sorted(status for status, _ in results) == [200] * 9 + [202]
    assert len(created) == 1 and count(jobs) == before + 1


def test_concurrent_duplicates_over_http_make_exactly_one_job(stack, jobs, created):
    """The same against the running API: several granian worker processes race."""
    headers, before = key(), count(jobs)

    def send():
        resp = requests.post(f"{stack.api}/jobs", json=TINY, headers=headers, timeout=30)
        return resp.status_code, resp.json()["id"]

    results = concurrently(send)
    created.update(job_id for _, job_id in results)
    assert sorted(status for status, _ in results) == [200] * 9 + [202]
    assert len(created) == 1 and count(jobs) == before + 1


def test_a_key_whose_job_is_gone_starts_afresh(client, jobs, created):
    headers = key()
    first = client.post("/jobs", json=TINY, headers=headers).get_json()["id"]
    created.add(first)
    jobs.redis.delete(f"echo-rnn:job:{first}")
    again = client.post("/jobs", json=TINY, headers=headers)
    assert again.status_code == 202 and again.get_json()["id"] != first
    created.add(again.get_json()["id"])


# --- the store itself ----------------------------------------------------------------------------


def store(redis_client, **kwargs) -> IdempotencyStore:
    return IdempotencyStore(redis_client, f"test-{uuid.uuid4().hex[:8]}", ttl_s=3600, **kwargs)


def test_a_released_reservation_can_be_claimed_again(redis_client):
    keys = store(redis_client)
    claim = keys.claim("anonymous", "k", "fp")
    assert claim.made_id is None
    keys.release(claim)
    again = keys.claim("anonymous", "k", "fp")
    assert again.made_id is None and again.value != claim.value
    keys.release(claim)  # a stale release leaves the new reservation alone
    keys.complete(again, "job-1")
    assert keys.claim("anonymous", "k", "fp").made_id == "job-1"
    ttl = redis_client.ttl(keys.redis_key("anonymous", "k"))
    assert 3500 < ttl <= 3600


def test_a_request_that_never_finishes_blocks_a_duplicate_only_briefly(redis_client):
    keys = store(redis_client, wait_s=0.3, pending_ttl_s=1)
    keys.claim("anonymous", "k", "fp")  # this request "dies" before making its job
    started = time.monotonic()
    with pytest.raises(Problem) as refused:
        keys.claim("anonymous", "k", "fp")
    assert refused.value.status == 409 and refused.value.headers["Retry-After"] == "1"
    assert 0.3 <= time.monotonic() - started < 2
    time.sleep(1.1)  # the reservation lapses
    assert keys.claim("anonymous", "k", "fp").made_id is None


def test_a_waiting_duplicate_gets_the_job_once_it_is_made(redis_client):
    keys = store(redis_client, wait_s=5)
    claim = keys.claim("anonymous", "k", "fp")
    threading.Timer(0.3, keys.complete, args=(claim, "job-7")).start()
    assert keys.claim("anonymous", "k", "fp").made_id == "job-7"


def renewals() -> int:
    return sum(t.name == "idempotency-renewal" and t.is_alive() for t in threading.enumerate())


def test_a_reservation_never_lapses_while_its_request_runs(redis_client):
    keys = store(redis_client, wait_s=0.3, pending_ttl_s=1.5)
    slow = keys.hold(keys.claim("anonymous", "k", "fp"))  # a request that takes three times the TTL
    time.sleep(4.5)
    with pytest.raises(Problem) as refused:  # its retry waits, it does not make a second job
        keys.claim("anonymous", "k", "fp")
    assert refused.value.status == 409
    keys.complete(slow, "job-9")
    assert keys.claim("anonymous", "k", "fp").made_id == "job-9"


def test_a_held_reservation_whose_request_died_still_lapses(redis_client):
    keys = store(redis_client, wait_s=0.1, pending_ttl_s=0.6)
    dead = keys.hold(keys.claim("anonymous", "k", "fp"))
    time.sleep(1.5)
    dead.renewal.stop()  # its process is gone: nothing renews it any more
    time.sleep(1)
    assert keys.claim("anonymous", "k", "fp").made_id is None


def test_every_request_stops_renewing_its_reservation_when_it_ends(settings, created):
    token = secrets.token_urlsafe(32)  # a token of its own: no active job yet
    app = create_app(derive(settings, api_tokens=[token], max_active_jobs_per_token=1))
    client, before = app.test_client(), renewals()
    made = client.post("/jobs", json=TINY, headers={**key(), **bearer(token)})
    created.add(made.get_json()["id"])
    problem(client.post("/jobs", json=TINY, headers={**key(), **bearer(token)}), 429)  # over its quota: released
    problem(client.post("/jobs", json={"num_epochs": 0}, headers={**key(), **bearer(token)}), 422)
    time.sleep(0.2)
    assert renewals() <= before
