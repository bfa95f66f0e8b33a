"""GET /models a page at a time (a bounded number of MLflow calls a page), rate-limited, and answers that name only
the jobs the caller may see (/models and /predict): against the stack's real MLflow and the suite's Redis."""

import secrets
import uuid

import pytest
from mlflow.tracking import MlflowClient

from contract.job_store import JobStore
from service.app import create_app
from service.auth import client_of
from tests.service.test_auth import bearer, derive
from tests.service.test_limits import address, too_many
from tests.support import problem

ALICE, BOB, ADMIN = (secrets.token_urlsafe(32) for _ in range(3))


@pytest.fixture(scope="module")
def registry(stack, trained_job, redis_server) -> tuple[str, str, list[str]]:
    """A registered model of this module's own: five versions from the trained job's run, each tagged with a job of
    alice's (versions 1, 3, 5) or bob's, recorded under a key prefix of its own; (model, prefix, job ids by version)."""
    import redis

    client = MlflowClient(tracking_uri=stack.mlflow)
    name, prefix = f"listing-{uuid.uuid4().hex[:8]}", f"test-{uuid.uuid4().hex[:8]}"
    trained = client.get_model_version("echo-rnn", trained_job["model"]["version"])
    client.create_registered_model(name)
    store = JobStore(redis.Redis.from_url(redis_server.url), prefix=prefix)
    job_ids = []
    for i in range(5):
        job = store.create({"num_epochs": 1}, steps=1, owner=client_of(ALICE if i % 2 == 0 else BOB))
        client.create_model_version(
            name,
            str(trained.source),
            run_id=trained.run_id,
            tags={"job_id": job.id},
            model_id=trained.source.rsplit("/", 1)[-1],
        )
        job_ids.append(job.id)
    return name, prefix, job_ids


@pytest.fixture
def app(settings, registry):
    name, prefix, _ = registry
    return create_app(
        derive(
            settings,
            registered_model=name,
            job_key_prefix=prefix,
            api_tokens=[ALICE, BOB],
            api_admin_tokens=[ADMIN],
            rate_limit_models="",
        )
    )


def test_pages_follow_each_other_newest_first_with_a_bounded_number_of_mlflow_calls(app, registry):
    mlflow = app.extensions["echo"].mlflow
    calls: list[str] = []
    for method in ("search_model_versions", "get_registered_model", "search_experiments", "search_runs"):
        real = getattr(mlflow, method)
        setattr(mlflow, method, lambda *a, _real=real, _name=method, **k: calls.append(_name) or _real(*a, **k))
    client, seen, cursor, pages = app.test_client(), [], None, 0
    while True:
        page = client.get(
            "/models", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=bearer(ADMIN)
        ).get_json()
        pages += 1
        assert len(page["models"]) <= 2 and len(calls) <= 4 * pages, calls
        seen += [m["version"] for m in page["models"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["5", "4", "3", "2", "1"] and pages == 3
    assert [m["version"] for m in client.get("/models", headers=bearer(ADMIN)).get_json()["models"]] == seen
    assert problem(client.get("/models?limit=101", headers=bearer(ADMIN)), 422)["errors"][0]["field"] == "limit"
    assert problem(client.get("/models?cursor=x", headers=bearer(ADMIN)), 422)["errors"][0]["field"] == "cursor"
    assert client.get("/models?cursor=1", headers=bearer(ADMIN)).get_json() == {"models": [], "next_cursor": None}


def test_a_listing_names_only_the_jobs_the_caller_may_see(app, registry):
    _, _, job_ids = registry
    client = app.test_client()

    def jobs_seen(headers: dict) -> dict[str, str | None]:
        return {m["version"]: m["job_id"] for m in client.get("/models", headers=headers).get_json()["models"]}

    assert jobs_seen(bearer(ALICE)) == {"5": job_ids[4], "4": None, "3": job_ids[2], "2": None, "1": job_ids[0]}
    assert jobs_seen(bearer(BOB)) == {"5": None, "4": job_ids[3], "3": None, "2": job_ids[1], "1": None}
    assert jobs_seen(bearer(ADMIN)) == {str(v + 1): job_ids[v] for v in range(5)}
    assert set(jobs_seen({}).values()) == {None}, "no token, tokens on: no job of anyone's"


def test_predict_names_the_job_only_to_those_who_may_see_it(settings, trained_job):
    version = trained_job["model"]["version"]
    tokens_on = create_app(derive(settings, api_tokens=[ALICE], api_admin_tokens=[ADMIN])).test_client()
    query = {"sequence": "0110", "model": f"models:/echo-rnn/{version}"}
    for headers in (bearer(ALICE), {}):  # the stack's job has no owner: only admins see it once tokens are on
        answer = tokens_on.get("/predict", query_string=query, headers=headers).get_json()
        assert answer["model"]["version"] == version and answer["model"]["job_id"] is None, answer
    answer = tokens_on.post(
        "/predict", json={"sequences": ["01"], "model": query["model"]}, headers=bearer(ALICE)
    ).get_json()
    assert answer["model"]["job_id"] is None
    admin = tokens_on.get("/predict", query_string=query, headers=bearer(ADMIN)).get_json()
    assert admin["model"]["job_id"] == trained_job["id"]
    tokens_off = create_app(settings).test_client()
    assert tokens_off.get("/predict", query_string=query).get_json()["model"]["job_id"] == trained_job["id"]


def test_models_has_a_rate_limit_of_its_own(settings):
    from tests.service.test_auth import client_at

    client = client_at(create_app(derive(settings, rate_limit_models="2/minute")), address())
    for _ in range(2):
        assert client.get("/models?limit=1").status_code == 200
    too_many(client.get("/models?limit=1"))
    assert client.get("/jobs").status_code == 200
