"""POST, GET and DELETE /sweeps against a real Redis: trials are jobs, groups are tasks on the Celery queue.

The app's records and queue live in a database of the suite's Redis that no worker reads, so every
group task a test queues stays on the queue to be read back.
"""

import base64
import json
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from contract import tasks
from contract.dispatch import Dispatch
from contract.job_store import JobStore
from contract.sweep import MAX_TRIALS
from contract.sweep_store import SweepStore
from service.app import create_app
from service.idempotency import HEADER, REPLAYED
from service.settings import Settings
from tests.service.test_auth import bearer, derive
from tests.support import free_port, problem

SWEEP_REDIS_DB = 12
TINY = {"num_epochs": 1, "total_series_length": 1000}
GRID = {"params": TINY, "grid": {"state_size": [4, 8], "seed": [0, 1]}}
TPE_SEARCH: dict[str, Any] = {
    "trials": 5,
    "batch": 2,
    "sampler": "tpe",
    "space": {"learning_rate": {"low": 0.1, "high": 1.0}},
}
TPE = {"params": {**TINY, "num_epochs": 2}, "random": TPE_SEARCH}


@pytest.fixture
def settings(redis_server) -> Iterator[Settings]:
    """Settings of an app alone in its Redis database, no rate limit; MLflow is never called."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{SWEEP_REDIS_DB}"
    store = redis.Redis.from_url(url)
    store.flushdb()
    yield Settings(redis_url=url, mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}", rate_limit_jobs="")
    store.flushdb()
    store.close()


@pytest.fixture
def store(settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture
def sweeps(store) -> SweepStore:
    return SweepStore(JobStore(store))


def queued_tasks(store: redis.Redis) -> list[tuple[str, str, list]]:
    """(task name, task id, args) of every task queued: those on the Celery queue, oldest first (no worker
    announced itself here: one at most), then those waiting their turn in Redis, in order."""
    messages = [json.loads(m) for m in reversed(store.lrange("celery", 0, -1))]
    sent = [(m["headers"]["task"], m["headers"]["id"], json.loads(base64.b64decode(m["body"]))[0]) for m in messages]
    return sent + [(m.name, m.task_id, m.args) for m in Dispatch(store).waiting()]


def fields(body: dict) -> set[str]:
    return {e["field"] for e in body["errors"]}


def test_a_grid_is_queued_as_trial_jobs_in_groups_of_the_same_shapes(client, store):
    resp = client.post("/sweeps", json={**GRID, "name": "sizes"})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    sweep = resp.get_json()
    assert resp.headers["Location"] == f"/sweeps/{sweep['id']}"
    assert (sweep["status"], sweep["name"], sweep["request"]["grid"]) == ("queued", "sizes", GRID["grid"])
    assert sweep["groups"] == [[0, 1], [2, 3]] and sweep["progress"]["trials"] == 4
    assert [t["values"] for t in sweep["trials"]] == [
        {"state_size": s, "seed": seed} for s in (4, 8) for seed in (0, 1)
    ]
    assert [(t["trial"], t["group"], t["status"]) for t in sweep["trials"]] == [
        (0, 0, "queued"),
        (1, 0, "queued"),
        (2, 1, "queued"),
        (3, 1, "queued"),
    ]
    for t in sweep["trials"]:
        job = client.get(f"/jobs/{t['job_id']}").get_json()
        assert job["sweep"] == {"sweep_id": sweep["id"], "trial": t["trial"], "group": t["group"]}
        assert {k: job["params"][k] for k in t["values"]} == t["values"] and job["params"]["num_epochs"] == 1
    job_ids = [t["job_id"] for t in sweep["trials"]]
    assert queued_tasks(store) == [
        (tasks.TRAIN_GROUP, f"{sweep['id']}-g0", [sweep["id"], 0, job_ids[:2]]),
        (tasks.TRAIN_GROUP, f"{sweep['id']}-g1", [sweep["id"], 1, job_ids[2:]]),
    ]
    assert client.get(f"/sweeps/{sweep['id']}").get_json() == sweep


def test_a_random_search_draws_the_same_trials_from_the_same_seed(client, store, settings):
    space = {"learning_rate": {"low": 0.01, "high": 1, "log": True}, "init": {"values": ["tutorial", "glorot"]}}
    body = {"params": TINY, "random": {"trials": 5, "seed": 3, "space": space}}
    first, again = (client.post("/sweeps", json=body).get_json() for _ in range(2))
    drawn = [t["values"] for t in first["trials"]]
    assert drawn == [t["values"] for t in again["trials"]] and len(drawn) == 5
    assert all(0.01 <= v["learning_rate"] <= 1 and v["init"] in ("tutorial", "glorot") for v in drawn)
    assert first["groups"] == [[0, 1, 2, 3, 4]]  # one shape
    small = create_app(derive(settings, sweep_group_size=2)).test_client().post("/sweeps", json=body).get_json()
    assert small["groups"] == [[0, 1], [2, 3], [4]] and len(queued_tasks(store)) == 2 + 3


@pytest.mark.parametrize(
    "body, bad",
    [
        ({"params": TINY}, {"grid"}),
        ({"grid": {"seed": [1]}, "random": {"trials": 1, "space": {"seed": {"values": [1]}}}}, {"grid"}),
        ({"grid": {"seed": [1]}, "colour": "red"}, {"colour"}),
        ({"grid": {"state_size": [4, 1000]}}, {"grid.state_size"}),
        ({"params": {"num_epochs": 0}, "grid": {"seed": [1]}}, {"params.num_epochs"}),
        ({"grid": {"device": ["cpu"]}}, {"grid.device"}),
        ({"grid": {"seed": list(range(MAX_TRIALS + 1))}}, {"grid"}),
        ({"random": {"trials": MAX_TRIALS + 1, "space": {"seed": {"values": [1]}}}}, {"random.trials"}),
        (
            {**GRID, "scheduler": {"type": "halving", "min_epochs": 1}},
            {"scheduler.min_epochs"},
        ),  # no rung below 1 epoch
        ({**GRID, "scheduler": {"type": "halving", "min_epochs": 1, "reduction": 1}}, {"scheduler.reduction"}),
        ({**GRID, "scheduler": {"type": "hyperband", "min_epochs": 1}}, {"scheduler.type"}),
        ({**GRID, "scheduler": {"type": "halving", "min_epochs": "1"}}, {"scheduler.min_epochs"}),
        ({**TPE, "scheduler": {"type": "halving", "min_epochs": 1}}, {"scheduler"}),  # tpe learns between groups
        ({"params": TINY, "random": {**TPE_SEARCH, "sampler": "qmc"}}, {"random.batch"}),
        ({"params": TINY, "random": {**TPE_SEARCH, "batch": 0}}, {"random.batch"}),
    ],
)
def test_an_invalid_sweep_names_the_field_and_queues_nothing(client, store, body, bad):
    assert fields(problem(client.post("/sweeps", json=body), 422)) == bad
    assert queued_tasks(store) == [] and store.zcard("echo-rnn:jobs") == 0


def test_a_halving_sweep_is_queued_with_its_scheduler(client):
    body = {
        "params": {**TINY, "num_epochs": 4},
        "grid": {"seed": [0, 1, 2]},
        "scheduler": {"type": "halving", "min_epochs": 1, "reduction": 2},
    }
    sweep = client.post("/sweeps", json=body).get_json()
    assert sweep["request"]["scheduler"] == body["scheduler"] and sweep["groups"] == [[0, 1, 2]]
    assert [(t["rung"], t["pruned"], t["rungs"]) for t in sweep["trials"]] == [(0, False, [])] * 3


def test_a_tpe_search_is_queued_a_batch_at_a_time_and_shows_the_trials_planned(client, store):
    sweep = client.post("/sweeps", json=TPE).get_json()
    assert (sweep["progress"]["trials"], sweep["progress"]["planned"], sweep["batches"]) == (2, 5, 1)
    assert sweep["groups"] == [[0, 1]] and [t["trial"] for t in sweep["trials"]] == [0, 1]
    job_ids = [t["job_id"] for t in sweep["trials"]]
    assert queued_tasks(store) == [(tasks.TRAIN_GROUP, f"{sweep['id']}-g0", [sweep["id"], 0, job_ids])]
    assert client.get(f"/sweeps/{sweep['id']}").get_json() == sweep
    [listed] = client.get("/sweeps").get_json()["sweeps"]
    assert (listed["progress"]["trials"], listed["progress"]["planned"], listed["group_count"]) == (2, 5, 1)
    again = client.post("/sweeps", json=TPE).get_json()
    assert [t["values"] for t in again["trials"]] == [t["values"] for t in sweep["trials"]]


def test_more_trials_than_max_sweep_trials_is_a_422_on_the_search(settings, store):
    client = create_app(derive(settings, max_sweep_trials=3)).test_client()
    body = problem(client.post("/sweeps", json={"grid": {"seed": [1, 2, 3, 4]}}), 422)
    assert fields(body) == {"grid"} and "MAX_SWEEP_TRIALS" in body["errors"][0]["message"]
    random = {"random": {"trials": 4, "space": {"learning_rate": {"low": 0.1, "high": 1}}}}
    assert fields(problem(client.post("/sweeps", json=random), 422)) == {"random.trials"}
    assert client.post("/sweeps", json={"params": TINY, "grid": {"seed": [1, 2, 3]}}).status_code == 202
    tpe = {"random": {**TPE_SEARCH, "trials": 4}}  # its later batches count too
    assert fields(problem(client.post("/sweeps", json=tpe), 422)) == {"random.trials"}
    with pytest.raises(ValueError):
        derive(settings, max_sweep_trials=MAX_TRIALS + 1)


def test_listing_pages_newest_first(client):
    made = [client.post("/sweeps", json={"params": TINY, "grid": {"seed": [i]}}).get_json()["id"] for i in range(3)]
    page = client.get("/sweeps?limit=2").get_json()
    assert [s["id"] for s in page["sweeps"]] == made[:0:-1] and page["next_cursor"] is not None
    rest = client.get(f"/sweeps?limit=2&cursor={page['next_cursor']}").get_json()
    assert [s["id"] for s in rest["sweeps"]] == made[:1] and rest["next_cursor"] is None
    assert fields(problem(client.get("/sweeps?limit=0"), 422)) == {"limit"}
    assert fields(problem(client.get("/sweeps?status=queued"), 422)) == {"status"}
    problem(client.get("/sweeps/nope"), 404)


def test_a_sweep_and_its_trials_belong_to_its_token_and_an_admin_sees_all(settings):
    alice, bob, admin = (secrets.token_urlsafe(32) for _ in range(3))
    client = create_app(derive(settings, api_tokens=[alice, bob], api_admin_tokens=[admin])).test_client()
    problem(client.post("/sweeps", json=GRID), 401)
    sweep = client.post("/sweeps", json=GRID, headers=bearer(alice)).get_json()
    assert sweep["owner"].startswith("token:")
    problem(client.get(f"/sweeps/{sweep['id']}", headers=bearer(bob)), 404)
    problem(client.delete(f"/sweeps/{sweep['id']}", headers=bearer(bob)), 404)
    problem(client.get(f"/jobs/{sweep['trials'][0]['job_id']}", headers=bearer(bob)), 404)
    assert client.get("/sweeps", headers=bearer(bob)).get_json()["sweeps"] == []
    assert client.get(f"/jobs/{sweep['trials'][0]['job_id']}", headers=bearer(alice)).status_code == 200
    assert [s["id"] for s in client.get("/sweeps", headers=bearer(alice)).get_json()["sweeps"]] == [sweep["id"]]
    assert [s["id"] for s in client.get("/sweeps", headers=bearer(admin)).get_json()["sweeps"]] == [sweep["id"]]
    assert client.delete(f"/sweeps/{sweep['id']}", headers=bearer(admin)).status_code == 200


def test_cancelling_a_queued_sweep_cancels_every_trial_then_409(client):
    sweep = client.post("/sweeps", json=GRID).get_json()
    resp = client.delete(f"/sweeps/{sweep['id']}")
    assert resp.status_code == 200
    done = resp.get_json()
    assert (done["status"], done["cancel_requested"]) == ("cancelled", True) and done["finished_at"]
    assert {t["status"] for t in done["trials"]} == {"cancelled"} and done["progress"]["finished"] == 4
    assert client.get(f"/jobs/{sweep['trials'][0]['job_id']}").get_json()["status"] == "cancelled"
    assert "already cancelled" in problem(client.delete(f"/sweeps/{sweep['id']}"), 409)["detail"]


def test_cancelling_a_running_sweep_asks_its_running_trials_to_stop(client, sweeps):
    sweep = client.post("/sweeps", json=GRID).get_json()
    running = sweep["trials"][1]["job_id"]
    assert sweeps.move(sweep["id"], "running") and sweeps.jobs.move(running, "running", only_from={"queued"})
    resp = client.delete(f"/sweeps/{sweep['id']}")
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["status"] == "running" and body["cancel_requested"] is True
    assert [t["status"] for t in body["trials"]] == ["cancelled", "running", "cancelled", "cancelled"]
    assert sweeps.jobs.cancel_requested(running)


def test_a_finished_sweep_cannot_be_cancelled(client, sweeps):
    sweep = client.post("/sweeps", json=GRID).get_json()
    assert sweeps.move(sweep["id"], "running") and sweeps.move(sweep["id"], "succeeded")
    assert "already succeeded" in problem(client.delete(f"/sweeps/{sweep['id']}"), 409)["detail"]


def dead_broker() -> Celery:
    dead = Celery("dead-queue", broker=f"redis://127.0.0.1:{free_port()}/0", set_as_current=False)
    dead.conf.update(task_publish_retry=False, broker_transport_options={"max_retries": 0})  # fail at once
    return dead


def test_a_broker_that_does_not_take_a_group_leaves_the_groups_waiting_in_redis(settings, store):
    app = create_app(settings)
    live = app.extensions["echo"].celery
    app.extensions["echo"].celery = dead_broker()
    resp = app.test_client().post("/sweeps", json=GRID)
    assert resp.status_code == 202 and resp.get_json()["status"] == "queued", "the sweep is safe in Redis"
    sweep = resp.get_json()
    waiting = [(tasks.TRAIN_GROUP, f"{sweep['id']}-g{g}") for g in (0, 1)]
    assert [(name, task_id) for name, task_id, _ in queued_tasks(store)] == waiting and store.llen("celery") == 0
    app.extensions["echo"].celery = live
    assert app.test_client().post("/jobs", json=TINY).status_code == 202  # its top-up sends the first group
    assert json.loads(store.lindex("celery", 0))["headers"]["id"] == f"{sweep['id']}-g0"


def test_a_redis_that_does_not_take_the_groups_fails_the_sweep_with_a_503(settings, store):
    app = create_app(settings)
    app.extensions["echo"].dispatch = Dispatch(redis.Redis(port=free_port()))  # its queues' Redis is away
    problem(app.test_client().post("/sweeps", json=GRID), 503)
    sweeps = SweepStore(JobStore(store))
    sweep = sweeps.get(sweeps.list(10, None)[0][0].id)
    assert sweep.status == "failed" and sweep.error == "the queue was unavailable"
    assert {(t.status, t.error) for t in sweep.trials} == {("failed", "the queue was unavailable")}


def test_the_openapi_document_has_the_sweeps(client):
    spec = client.get("/openapi.json").get_json()
    assert set(spec["paths"]["/sweeps"]) == {"get", "post"} and set(spec["paths"]["/sweeps/{sweep_id}"]) == {
        "get",
        "delete",
    }
    post = spec["paths"]["/sweeps"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SweepRequest"}
    assert post["responses"]["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Sweep"}
    assert {"params", "grid", "random"} <= set(spec["components"]["schemas"]["SweepRequest"]["properties"])
    assert {"trials", "leaderboard", "progress", "groups"} <= set(spec["components"]["schemas"]["Sweep"]["properties"])
    assert [p["name"] for p in spec["paths"]["/sweeps"]["get"]["parameters"]] == ["limit", "cursor"]
    assert set(spec["paths"]["/sweeps/{sweep_id}"]["delete"]["responses"]) >= {"200", "202", "404", "409"}


def test_redis_down_is_a_503_not_a_500():
    dead = Settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}"
    )
    client = create_app(dead).test_client()
    problem(client.post("/sweeps", json=GRID), 503)
    problem(client.get("/sweeps"), 503)
    problem(client.delete("/sweeps/some-id"), 503)


def test_a_token_may_have_only_so_many_sweeps_queued_or_running(settings):
    alice, bob = (secrets.token_urlsafe(32) for _ in range(2))
    client = create_app(derive(settings, api_tokens=[alice, bob], max_active_sweeps_per_token=2)).test_client()
    first = client.post("/sweeps", json=GRID, headers=bearer(alice)).get_json()
    assert client.post("/sweeps", json=GRID, headers=bearer(alice)).status_code == 202
    refused = problem(client.post("/sweeps", json=GRID, headers=bearer(alice)), 429)
    assert "MAX_ACTIVE_SWEEPS_PER_TOKEN" in refused["detail"]
    assert client.post("/sweeps", json=GRID, headers=bearer(bob)).status_code == 202, "another token's own count"
    assert client.delete(f"/sweeps/{first['id']}", headers=bearer(alice)).status_code == 200
    assert client.post("/sweeps", json=GRID, headers=bearer(alice)).status_code == 202, "a finished sweep frees a place"


def test_the_same_idempotency_key_and_body_give_the_same_sweep_once(client, store):
    headers = {HEADER: str(uuid.uuid4())}
    first = client.post("/sweeps", json=GRID, headers=headers)
    assert first.status_code == 202 and REPLAYED not in first.headers
    again = client.post("/sweeps", json=GRID, headers=headers)
    assert again.status_code == 200 and again.headers[REPLAYED] == "true"
    assert again.headers["Location"] == first.headers["Location"] and again.get_json()["id"] == first.get_json()["id"]
    assert len(queued_tasks(store)) == 2, "its two groups were queued once"
    refused = problem(client.post("/sweeps", json={**GRID, "name": "other"}, headers=headers), 422)
    assert refused["title"] == "Idempotency-Key reused with a different body"
    job = client.post("/jobs", json=TINY, headers=headers)  # the jobs' keys are their own
    assert job.status_code == 202 and job.get_json()["sweep"] is None


def test_a_sweep_the_queue_refused_gives_its_idempotency_key_back(settings, store):
    app = create_app(settings)
    live = app.extensions["echo"].dispatch
    app.extensions["echo"].dispatch = Dispatch(redis.Redis(port=free_port()))
    headers = {HEADER: str(uuid.uuid4())}
    problem(app.test_client().post("/sweeps", json=GRID, headers=headers), 503)
    app.extensions["echo"].dispatch = live
    retry = app.test_client().post("/sweeps", json=GRID, headers=headers)
    assert retry.status_code == 202 and retry.get_json()["status"] == "queued", (
        "a new sweep, not the failed one replayed"
    )


def test_post_sweeps_documents_its_idempotency_key(client):
    post = client.get("/openapi.json").get_json()["paths"]["/sweeps"]["post"]
    assert HEADER in [p["name"] for p in post["parameters"]]
    assert {"200", "202", "409"} <= set(post["responses"]) and REPLAYED in post["responses"]["200"]["headers"]


def test_a_pruned_trial_cannot_be_cancelled_it_ends_with_its_group(client, sweeps):
    halving = {**GRID, "params": {**TINY, "num_epochs": 3}, "scheduler": {"type": "halving", "min_epochs": 1}}
    sweep = client.post("/sweeps", json=halving).get_json()
    trial = sweep["trials"][0]["job_id"]
    sweeps.jobs.move(trial, "running")
    sweeps.jobs.update(trial, pruned=1)
    refused = client.delete(f"/jobs/{trial}")
    assert refused.status_code == 409 and "pruned at rung 1" in refused.get_json()["detail"], refused.get_json()
    assert not sweeps.jobs.get(trial).cancel_requested
