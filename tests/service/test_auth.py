"""API tokens: who may submit, list, read and cancel jobs, and (when asked) predict."""

import logging
import secrets

import pytest
from pydantic import ValidationError

from contract.clock import now
from contract.job_store import JobStore
from contract.logs import formatter
from service.app import create_app
from service.settings import Settings
from tests.support import problem

TOKEN = secrets.token_urlsafe(32)
OTHER = secrets.token_urlsafe(32)
TINY = {"num_epochs": 1, "total_series_length": 1000}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def derive(settings: Settings, **changes) -> Settings:
    """The test settings with some changed, validated as the environment's would be."""
    return Settings.model_validate({**settings.model_dump(), **changes})


@pytest.fixture
def jobs(redis_client) -> JobStore:
    return JobStore(redis_client)


@pytest.fixture
def created(jobs):
    """Ids of jobs a test made; cancelled at the end so the stack's workers never train them."""
    ids: list[str] = []
    yield ids
    for job_id in ids:
        jobs.move(job_id, "cancelled", only_from={"queued"}, finished_at=now())


@pytest.fixture
def secured(settings):
    """An app with two tokens."""
    return create_app(derive(settings, api_tokens=[TOKEN, OTHER])).test_client()


def client_at(app, address: str):
    """A test client whose requests come from address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def unauthorized(resp, error: str | None = None) -> None:
    problem(resp, 401)
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert (f'error="{error}"' in challenge) if error else ("error=" not in challenge)


def test_job_endpoints_need_a_token(secured, jobs, created):
    before = jobs.redis.zcard("echo-rnn:jobs")
    for wrong, error in (
        (None, None),
        ("x" * 43, "invalid_token"),
        (TOKEN[:-1], "invalid_token"),
        (TOKEN + "x", "invalid_token"),
        (TOKEN.upper(), "invalid_token"),
    ):
        headers = bearer(wrong) if wrong else {}
        unauthorized(secured.post("/jobs", json=TINY, headers=headers), error)
        unauthorized(secured.get("/jobs", headers=headers), error)
        unauthorized(secured.get("/jobs/00000000-0000-0000-0000-000000000000", headers=headers), error)
        unauthorized(secured.delete("/jobs/00000000-0000-0000-0000-000000000000", headers=headers), error)
    # Another scheme, or the token without one, is no bearer token.
    unauthorized(secured.get("/jobs", headers={"Authorization": f"Basic {TOKEN}"}))
    unauthorized(secured.get("/jobs", headers={"Authorization": TOKEN}))
    unauthorized(secured.get("/jobs", headers={"Authorization": "Bearer "}))
    assert jobs.redis.zcard("echo-rnn:jobs") == before, "a refused submission made a job"


def test_either_token_opens_the_job_endpoints(secured, created):
    resp = secured.post("/jobs", json=TINY, headers=bearer(OTHER))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    created.append(resp.get_json()["id"])
    resp = secured.post("/jobs", json=TINY, headers=bearer(TOKEN))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job = resp.get_json()
    created.append(job["id"])
    assert secured.get(f"/jobs/{job['id']}", headers=bearer(TOKEN)).get_json()["id"] == job["id"]
    listed = secured.get("/jobs?limit=100", headers={"Authorization": f"bearer {TOKEN}"})  # the scheme is case-blind
    assert listed.status_code == 200 and job["id"] in [j["id"] for j in listed.get_json()["jobs"]]
    problem(secured.get("/jobs/00000000-0000-0000-0000-000000000000", headers=bearer(TOKEN)), 404)
    cancelled = secured.delete(f"/jobs/{job['id']}", headers=bearer(TOKEN))
    assert cancelled.status_code in (200, 202) and cancelled.get_json()["id"] == job["id"]


def test_health_docs_and_metrics_stay_open(secured):
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/metrics"):
        assert secured.get(path).status_code == 200, path


def test_predict_is_open_by_default_for_registered_versions(secured, trained_job):
    resp = secured.get("/predict", query_string={"sequence": "0110", "model": trained_job["model"]["uri"]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert secured.post("/predict", json={"sequences": ["01"], "model": trained_job["model"]["uri"]}).status_code == 200
    assert secured.get("/models").status_code == 200
    # A job id is a reference for its owner only: this job has none that a token holds.
    problem(secured.get("/predict", query_string={"sequence": "0110", "model": trained_job["id"]}), 404)


def test_predict_can_require_a_token(settings, trained_job):
    client = create_app(derive(settings, api_tokens=[TOKEN], predict_requires_token=True)).test_client()
    query = {"sequence": "0110", "model": trained_job["model"]["uri"]}
    unauthorized(client.get("/predict", query_string=query))
    unauthorized(client.post("/predict", json={"sequences": ["01"]}, headers=bearer(OTHER)), "invalid_token")
    unauthorized(client.get("/models"))
    assert client.get("/predict", query_string=query, headers=bearer(TOKEN)).status_code == 200
    assert (
        client.post(
            "/predict", json={"sequences": ["01"], "model": trained_job["model"]["uri"]}, headers=bearer(TOKEN)
        ).status_code
        == 200
    )
    assert client.get("/models", headers=bearer(TOKEN)).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_without_tokens_nothing_asks_for_one(client, created):
    resp = client.post("/jobs", json=TINY, headers=bearer("anything-at-all"))
    assert resp.status_code == 202
    created.append(resp.get_json()["id"])
    assert client.get("/jobs").status_code == 200


def test_the_token_never_reaches_the_logs_or_redis(settings, caplog, redis_client, created):
    wrong = secrets.token_urlsafe(32)
    app = create_app(derive(settings, api_tokens=[TOKEN], rate_limit_jobs="1/minute"))
    client = client_at(app, "10.9.8.7")
    caplog.set_level(logging.DEBUG)
    first = client.post("/jobs", json=TINY, headers={**bearer(TOKEN), "Idempotency-Key": secrets.token_hex(8)})
    assert first.status_code == 202
    created.append(first.get_json()["id"])
    problem(client.post("/jobs", json=TINY, headers=bearer(TOKEN)), 429)  # Flask-Limiter logs the breach
    problem(client.get("/jobs", headers=bearer(wrong)), 401)
    problem(client.post("/jobs", json={"num_epochs": 0}, headers=bearer(wrong)), 401)
    client.get("/jobs", headers=bearer(TOKEN))
    assert caplog.records, "nothing was logged: the test would prove nothing"
    assert any(r.name == "service.requests" for r in caplog.records)
    assert any("exceeded" in r.getMessage() for r in caplog.records), "the limiter's breach line"
    json_lines = formatter()
    for record in caplog.records:
        for secret in (TOKEN, wrong):
            assert secret not in record.getMessage()
            assert secret not in repr(record.__dict__)
            assert secret not in json_lines.format(record)
    keys = [k.decode() for k in redis_client.scan_iter(count=1000)]
    assert keys and not [k for k in keys if TOKEN in k]


def test_tokens_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("API_TOKENS", f" {TOKEN} ,{OTHER},")
    assert [t.get_secret_value() for t in Settings().api_tokens] == [TOKEN, OTHER]
    monkeypatch.setenv("API_TOKENS", f'["{OTHER}"]')
    assert [t.get_secret_value() for t in Settings().api_tokens] == [OTHER]
    monkeypatch.setenv("API_TOKENS", "")
    assert Settings().api_tokens == []
    assert TOKEN not in repr(Settings(api_tokens=[TOKEN])), "settings print their tokens"


@pytest.mark.parametrize("bad", ["change-me", "short" * 3, "has space" * 5, "é" * 40])
def test_weak_or_malformed_tokens_fail_early_without_being_repeated(monkeypatch, bad):
    monkeypatch.setenv("API_TOKENS", f"{TOKEN},{bad}")
    with pytest.raises(ValidationError) as failure:
        Settings(redis_url="redis://127.0.0.1:1/0", mlflow_tracking_uri="http://127.0.0.1:1")
    message = str(failure.value)
    assert "token 2" in message and "secrets.token_urlsafe" in message
    assert bad not in message and TOKEN not in message


def test_the_document_shows_who_needs_a_token(settings):
    spec = create_app(derive(settings, api_tokens=[TOKEN])).test_client().get("/openapi.json").get_json()
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    secured = {(p, m) for p, ops in spec["paths"].items() for m, op in ops.items() if op.get("security")}
    assert secured == {
        ("/jobs", "post"),
        ("/jobs", "get"),
        ("/jobs/{job_id}", "get"),
        ("/jobs/{job_id}", "delete"),
        ("/sweeps", "post"),
        ("/sweeps", "get"),
        ("/sweeps/{sweep_id}", "get"),
        ("/sweeps/{sweep_id}", "delete"),
        ("/models/backfill", "post"),
    }
    for path, method in secured:
        op = spec["paths"][path][method]
        assert op["security"] == [{"bearerAuth": []}]
        assert "application/problem+json" in op["responses"]["401"]["content"]
    assert "401" not in spec["paths"]["/predict"]["get"]["responses"]
    strict = create_app(derive(settings, api_tokens=[TOKEN], predict_requires_token=True)).test_client()
    spec = strict.get("/openapi.json").get_json()
    assert {"/predict", "/models"} <= {
        p for p, ops in spec["paths"].items() for op in ops.values() if op.get("security")
    }
    open_spec = create_app(settings).test_client().get("/openapi.json").get_json()
    assert not [op for ops in open_spec["paths"].values() for op in ops.values() if op.get("security")]


def test_only_an_admin_token_backfills_the_models(settings):
    admin = secrets.token_urlsafe(32)
    app = create_app(derive(settings, api_tokens=[TOKEN], api_admin_tokens=[admin])).test_client()
    problem(app.post("/models/backfill"), 401)
    refused = problem(app.post("/models/backfill", headers={"Authorization": f"Bearer {TOKEN}"}), 403)
    assert "admin token" in refused["detail"]
    queued = app.post("/models/backfill", headers={"Authorization": f"Bearer {admin}"})
    assert queued.status_code == 202 and queued.get_json()["task_id"].startswith("backfill-"), queued.get_data(
        as_text=True
    )
