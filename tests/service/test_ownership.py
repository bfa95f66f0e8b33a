"""With tokens, a job belongs to the token that submitted it; an admin token sees all; quotas per token."""

import secrets

import pytest

from contract.clock import now
from contract.job import FINISHED
from contract.job_store import JobStore
from service.app import create_app
from tests.service.test_auth import TINY, derive
from tests.service.test_auth import bearer as auth_bearer
from tests.support import problem, wait_for

ALICE, BOB, ADMIN = "alice", "bob", "admin"  # names of each test's own tokens (see tokens)


@pytest.fixture
def jobs(redis_client) -> JobStore:
    return JobStore(redis_client)


@pytest.fixture(autouse=True)
def tokens(monkeypatch) -> dict[str, str]:
    """Fresh tokens per test: a token's quota counts its jobs still queued or running from earlier tests."""
    fresh = {name: secrets.token_urlsafe(32) for name in (ALICE, BOB, ADMIN)}
    monkeypatch.setitem(globals(), "TOKENS", fresh)
    return fresh


def bearer(name: str) -> dict:
    return auth_bearer(TOKENS[name])


TOKENS: dict[str, str] = {}


@pytest.fixture
def app(settings, jobs, tokens):
    """An app with two clients' tokens and an admin token; the jobs its tests queue are cancelled at the end."""
    built = create_app(
        derive(
            settings,
            api_tokens=[tokens[ALICE], tokens[BOB]],
            api_admin_tokens=[tokens[ADMIN]],
            max_active_jobs_per_token=2,
        )
    )
    yield built
    for job_id in getattr(built, "made", []):
        jobs.move(job_id, "cancelled", only_from={"queued"}, finished_at=now())


def submit(app, token: str) -> dict:
    resp = app.test_client().post("/jobs", json=TINY, headers=bearer(token))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    app.made = [*getattr(app, "made", []), resp.get_json()["id"]]
    return resp.get_json()


def test_another_token_neither_reads_nor_cancels_a_job_and_lists_only_its_own(app):
    client = app.test_client()
    alices, bobs = submit(app, ALICE), submit(app, BOB)
    assert client.get(f"/jobs/{alices['id']}", headers=bearer(ALICE)).status_code == 200
    problem(client.get(f"/jobs/{alices['id']}", headers=bearer(BOB)), 404)
    problem(client.delete(f"/jobs/{alices['id']}", headers=bearer(BOB)), 404)
    assert client.get(f"/jobs/{alices['id']}", headers=bearer(ALICE)).get_json()["cancel_requested"] is False
    listed = {j["id"] for j in client.get("/jobs?limit=100", headers=bearer(BOB)).get_json()["jobs"]}
    assert bobs["id"] in listed and alices["id"] not in listed
    assert all(
        j["owner"] == bobs["owner"] for j in client.get("/jobs?limit=100", headers=bearer(BOB)).get_json()["jobs"]
    )


def test_an_admin_token_sees_and_cancels_every_job(app):
    client = app.test_client()
    alices, bobs = submit(app, ALICE), submit(app, BOB)
    listed = {j["id"] for j in client.get("/jobs?limit=100", headers=bearer(ADMIN)).get_json()["jobs"]}
    assert {alices["id"], bobs["id"]} <= listed
    assert client.get(f"/jobs/{bobs['id']}", headers=bearer(ADMIN)).status_code == 200
    assert client.delete(f"/jobs/{alices['id']}", headers=bearer(ADMIN)).status_code in (200, 202)  # queued or running


def test_a_job_id_names_a_model_only_for_its_owner(app, trained_job, jobs):
    # A trained job handed to Alice: as a model reference it resolves for her and the admin, not for Bob.
    owner = app.test_client().post("/jobs", json=TINY, headers=bearer(ALICE)).get_json()
    app.made = [*getattr(app, "made", []), owner["id"]]
    jobs.update(trained_job["id"], owner=owner["owner"])
    try:
        client = app.test_client()
        url = f"/predict?sequence=0110&model={trained_job['id']}"
        assert client.get(url, headers=bearer(ALICE)).status_code == 200
        assert client.get(url, headers=bearer(ADMIN)).status_code == 200
        problem(client.get(url, headers=bearer(BOB)), 404)
        problem(client.get(url), 404)
        assert client.get(f"/predict?sequence=0110&model={trained_job['model']['uri']}").status_code == 200
    finally:
        jobs.update(trained_job["id"], owner=None)


def test_a_token_has_at_most_its_quota_of_active_jobs(app, jobs):
    client = app.test_client()
    first, _ = submit(app, ALICE), submit(app, ALICE)
    over = client.post("/jobs", json=TINY, headers=bearer(ALICE))
    body = problem(over, 429)
    assert "2 jobs queued or running" in body["detail"] and "MAX_ACTIVE_JOBS_PER_TOKEN" in body["detail"]
    assert over.headers["Retry-After"]
    submit(app, BOB)  # another client's queue is its own
    assert client.delete(f"/jobs/{first['id']}", headers=bearer(ALICE)).status_code in (200, 202)
    wait_for(lambda: jobs.get(first["id"]).status in FINISHED, 60, "the cancelled job ending")
    submit(app, ALICE)  # one has ended: room for one more
