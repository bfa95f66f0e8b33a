"""Per-client rate limits: POST /jobs and /predict answer 429 with Retry-After past a client's budget."""

import secrets

import pytest

from contract.clock import now
from contract.job_store import JobStore
from service.app import create_app
from tests.service.test_auth import OTHER, TINY, TOKEN, bearer, client_at, derive, problem
from tests.support import free_port


def address() -> str:
    """A client address of this test's own: its buckets are empty."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


@pytest.fixture
def created(redis_client):
    ids: list[str] = []
    yield ids
    jobs = JobStore(redis_client)
    for job_id in ids:
        jobs.move(job_id, "cancelled", only_from={"queued"}, finished_at=now())


def accepted(resp, created: list[str]) -> dict:
    assert resp.status_code == 202, resp.get_data(as_text=True)
    created.append(resp.get_json()["id"])
    return resp


def too_many(resp) -> int:
    problem(resp, 429)
    seconds = int(resp.headers["Retry-After"])
    assert 1 <= seconds <= 60
    return seconds


def test_the_fourth_submission_in_a_minute_is_refused(settings, created):
    client = client_at(create_app(derive(settings, rate_limit_jobs="3/minute")), address())
    for remaining in (2, 1, 0):
        resp = accepted(client.post("/jobs", json=TINY), created)
        assert resp.headers["X-RateLimit-Limit"] == "3" and resp.headers["X-RateLimit-Remaining"] == str(remaining)
        assert "Retry-After" not in resp.headers
    body = problem(client.post("/jobs", json=TINY), 429)
    assert "3 per 1 minute" in body["detail"]
    too_many(client.post("/jobs", json=TINY))
    too_many(client.post("/jobs", json={"num_epochs": 0}))  # refused before it is even read
    # Other endpoints are not limited by it.
    assert client.get("/jobs").status_code == 200


def test_only_accepted_jobs_count(settings, created):
    client = client_at(create_app(derive(settings, rate_limit_jobs="2/minute")), address())
    for _ in range(5):
        problem(client.post("/jobs", json={"num_epochs": 0}), 422)
    key = {"Idempotency-Key": secrets.token_hex(8)}
    accepted(client.post("/jobs", json=TINY, headers=key), created)
    for _ in range(3):  # replays make no job and cost nothing
        assert client.post("/jobs", json=TINY, headers=key).status_code == 200
    accepted(client.post("/jobs", json=TINY), created)
    too_many(client.post("/jobs", json=TINY))


def test_each_token_has_its_own_budget(settings, created):
    app = create_app(derive(settings, api_tokens=[TOKEN, OTHER], rate_limit_jobs="2/minute"))
    client = client_at(app, address())  # one address for both
    for _ in range(2):
        accepted(client.post("/jobs", json=TINY, headers=bearer(TOKEN)), created)
    too_many(client.post("/jobs", json=TINY, headers=bearer(TOKEN)))
    accepted(client.post("/jobs", json=TINY, headers=bearer(OTHER)), created)
    # A refused token costs nothing and is not a way around the limit.
    problem(client.post("/jobs", json=TINY, headers=bearer("y" * 43)), 401)
    too_many(client.post("/jobs", json=TINY, headers=bearer(TOKEN)))


def test_each_address_has_its_own_budget(settings, created):
    app = create_app(derive(settings, rate_limit_jobs="1/minute"))
    first, second = (client_at(app, address()) for _ in range(2))
    accepted(first.post("/jobs", json=TINY), created)
    too_many(first.post("/jobs", json=TINY))
    accepted(second.post("/jobs", json=TINY), created)
    # Without tokens configured, a made-up token is no new identity: the address counts.
    too_many(first.post("/jobs", json=TINY, headers=bearer(TOKEN)))


def test_the_budget_is_shared_by_the_api_processes(settings, created):
    """Two apps (two granian workers, two hosts) count in the same Redis."""
    changed = derive(settings, rate_limit_jobs="2/minute")
    where = address()
    one, two = client_at(create_app(changed), where), client_at(create_app(changed), where)
    accepted(one.post("/jobs", json=TINY), created)
    accepted(two.post("/jobs", json=TINY), created)
    too_many(one.post("/jobs", json=TINY))
    too_many(two.post("/jobs", json=TINY))


def test_predictions_share_one_budget_and_every_request_counts(settings):
    client = client_at(create_app(derive(settings, rate_limit_predict="3/minute")), address())
    problem(client.get("/predict", query_string={"sequence": "01x"}), 422)
    problem(client.post("/predict", json={"sequences": []}), 422)
    resp = client.get("/predict", query_string={"sequence": "2"})
    problem(resp, 422)
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    too_many(client.get("/predict", query_string={"sequence": "01"}))
    too_many(client.post("/predict", json={"sequences": ["01"]}))
    assert client.get("/models").status_code == 200 and client.get("/healthz").status_code == 200


def test_an_empty_limit_is_no_limit(settings):
    client = client_at(create_app(derive(settings, rate_limit_predict="")), address())
    for _ in range(20):
        resp = client.get("/predict", query_string={"sequence": "01x"})
        assert resp.status_code == 422 and "X-RateLimit-Limit" not in resp.headers


def test_a_redis_outage_degrades_to_counting_in_memory(settings):
    """No Redis: the limits still hold (in this process), and nothing answers 500."""
    down = derive(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_predict="2/minute")
    client = client_at(create_app(down), address())
    problem(client.post("/jobs", json={"num_epochs": 0}), 422)
    body = problem(client.post("/jobs", json=TINY), 503)
    assert "Redis" in body["detail"]
    problem(client.post("/jobs", json=TINY, headers={"Idempotency-Key": "k"}), 503)
    problem(client.get("/predict", query_string={"sequence": "01x"}), 422)
    problem(client.get("/predict", query_string={"sequence": "01x"}), 422)
    too_many(client.get("/predict", query_string={"sequence": "01x"}))


def test_the_document_shows_the_limits(settings):
    spec = create_app(derive(settings, rate_limit_jobs="7/minute")).test_client().get("/openapi.json").get_json()
    submit = spec["paths"]["/jobs"]["post"]
    assert "7/minute" in submit["description"]
    assert "Retry-After" in submit["responses"]["429"]["headers"]
    assert "application/problem+json" in submit["responses"]["429"]["content"]
    assert "429" in spec["paths"]["/predict"]["post"]["responses"]
    assert "429" not in spec["paths"]["/jobs"]["get"]["responses"]
