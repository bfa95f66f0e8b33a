"""Bad input never breaks the API: schemathesis fuzzes every operation against /openapi.json.

Every request it makes, well-formed or not, must get a documented status, the documented content
type, headers and body, never a 5xx; a request the document rejects must get a 4xx and one it
accepts must not (bar 404 for ids that do not exist); an error is a problem document, and a 422
names the fields. Then hand-written cases for what a fuzzer is unlikely to produce.

The run is schemathesis's engine, as `st run` drives it (its pytest plugin's from_fixture() does
not work with pytest 9.2), over three phases: examples (the document has none), coverage (boundary
values, a negation of each constraint, wrong content types and methods, derived deterministically
from the document) and fuzzing (MAX_EXAMPLES random cases per operation, from SEED). The stateful
phase follows links between operations and the document has none.

Which server answers:

- Every operation but POST /jobs is fuzzed over HTTP against the running stack (granian, as
  `make run` and the containers serve it), with a trained model registered, so that predictions
  and model look-ups reach their real code and not only their 404. The coverage phase reuses ids
  it saw (the jobs of GET /jobs) for GET and DELETE /jobs/{job_id}: it may cancel a job of the
  suite's still queued or running, and the tests before this one leave none.
- POST /jobs is fuzzed against an API app of its own (the same create_app, called in process
  through WSGI) whose Redis is a separate database that no worker consumes: every valid body the
  fuzzer makes becomes a job record and a Celery message there, and none is ever trained. Sent to
  the stack instead, its valid bodies (up to 10,000 epochs of 5,000,000 bits) would keep the
  stack's two worker slots busy for the rest of the suite, and cancelling them afterwards would
  race the workers, which take a queued job within milliseconds. The database is emptied after.
- GET /openapi.json is the document itself, which schemathesis leaves out of the operations it
  tests; tests/service/test_openapi.py checks it.
"""

import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import requests
import schemathesis
from schemathesis import engine
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events

from contract.dispatch import Dispatch
from service.app import create_app
from service.schemas import MAX_QUERY_BITS, MAX_SEQUENCE_BITS
from service.settings import Settings
from tests.support import problem

PROBLEM = "application/problem+json"
# A database of the suite's Redis that nothing else uses: POST /jobs's queue while fuzzing.
FUZZ_REDIS_DB = 13
SEED = 20_240_611
MAX_EXAMPLES = 100

CONFIG: dict[str, Any] = {
    "seed": SEED,
    "request-timeout": 60,
    # Nothing written under the repository (.hypothesis/): each run starts from the seed alone.
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
    "checks": {
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
        # Schema-violating requests must be refused with a 4xx: 413 is the documented answer to a
        # sequence over 100,000 bits or more than 1,000 sequences, both also limits of the schema;
        # 409 (an Idempotency-Key reused) and 429 (a rate limit) refuse before validating.
        "negative_data_rejection": {"enabled": True, "expected-statuses": [400, 404, 405, 409, 413, 415, 422, 429]},
        # Schema-valid requests must be accepted (or be 404 for ids and models that do not exist).
        "positive_data_acceptance": {"enabled": True},
        # A method an operation does not have: 405 with an Allow header.
        "unsupported_method": {"enabled": True},
        "problem_names_the_field": {"enabled": True},
    },
}
# POST /jobs: training parameters have constraints across fields (a window must fit in the series,
# the job must stay under 2,000,000 steps) that JSON Schema cannot state, so a body valid for the
# document may rightly get a 422 naming the field to change. (A config of its own rather than an
# [[operations]] entry: with one, schema.include() no longer narrows the operations.)
JOBS_CONFIG = {**CONFIG, "checks": {**CONFIG["checks"], "positive_data_acceptance": {"enabled": False}}}


@schemathesis.check
def problem_names_the_field(ctx, response, case) -> None:
    """An error is a problem document whose status is the response's; a 422 names each bad field."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith(PROBLEM), f"an error answered as {content_type!r}"
    body = json.loads(response.content)
    assert body["status"] == response.status_code, body
    assert body["title"] and body["detail"], body
    if response.status_code == 422:
        assert body["errors"], body
        for error in body["errors"]:
            assert error["field"] and error["message"] and error["location"] in {"query", "body", "header"}, body
            assert error["field"] == "(body)" or error["field"].split(".")[0] in body["detail"], body


@dataclass
class Report:
    """What one run saw: statuses per operation, failures and errors, as text for an assertion."""

    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"{sum(c.total() for c in self.statuses.values())} requests in {self.seconds:.1f} s (seed {SEED})"]
        lines += [f"  {op}: {dict(sorted(c.items()))}" for op, c in sorted(self.statuses.items())]
        lines += ["failures:", *self.failures] if self.failures else []
        lines += ["errors:", *self.errors] if self.errors else []
        return "\n".join(lines)


def fuzz(schema) -> Report:
    """Run every phase over every operation of the schema and collect what went wrong."""
    report = Report()
    started = time.monotonic()
    seen: set[tuple[str | None, str, str]] = set()  # one example of each failure of each operation
    for event in engine.from_schema(schema).execute():
        if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)):
            recorder = event.recorder
            for case_id, interaction in recorder.interactions.items():
                if interaction.response is not None:
                    operation = recorder.cases[case_id].value.operation.label
                    report.statuses[operation][interaction.response.status_code] += 1
            for checks in recorder.checks.values():
                for check in checks:
                    info = check.failure_info
                    key = (info.failure.operation, check.name, info.failure.title) if info else None
                    if key is not None and key not in seen:
                        seen.add(key)
                        report.failures.append(
                            f"- {info.failure.operation} {check.name}: {info.failure.title}\n"
                            f"  {info.failure.message[:1000]}\n  {info.code_sample[:1000]}"
                        )
        elif isinstance(event, events.NonFatalError):
            report.errors.append(f"- {event.label}: {event.value!r}"[:2000])
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            report.failures += [f"- {f.operation}: {f.title}: {f.message[:1000]}" for f in event.failures]
    report.seconds = time.monotonic() - started
    return report


def _operations(schema) -> set[str]:
    return {result.ok().label for result in schema.get_all_operations()}


def test_the_stack_answers_every_request_as_documented(stack, trained_job):
    schema = schemathesis.openapi.from_url(f"{stack.api}/openapi.json", config=SchemathesisConfig.from_dict(CONFIG))
    schema = schema.exclude(operation_id="jobs_submit").exclude(operation_id="sweeps_submit")
    report = fuzz(schema)
    print(report)
    assert not report.failures and not report.errors, report
    assert set(report.statuses) == _operations(schema), report
    # Valid requests reached the model, not only the validation in front of it.
    assert report.statuses["GET /predict"][200] and report.statuses["POST /predict"][200], report


@pytest.fixture
def isolated_jobs_app(redis_server, stack) -> Iterator:
    """An API whose job records and queue live in a Redis database no worker reads."""
    url = redis_server.url.rsplit("/", 1)[0] + f"/{FUZZ_REDIS_DB}"
    store = redis.Redis.from_url(url)
    store.flushdb()
    # No rate limit nor records budget: past them, the rest of the run would only see 429s.
    yield create_app(
        Settings(
            redis_url=url,
            mlflow_tracking_uri=stack.mlflow,
            rate_limit_jobs="",
            rate_limit_predict="",
            max_records_per_hour=0,
        )
    )
    store.flushdb()
    store.close()


def test_job_and_sweep_submission_answer_every_request_as_documented(isolated_jobs_app, redis_client):
    stack_jobs = redis_client.zcard("echo-rnn:jobs")
    config = SchemathesisConfig.from_dict(JOBS_CONFIG)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", isolated_jobs_app, config=config)
    schema = schema.include(operation_id="jobs_submit").include(operation_id="sweeps_submit")
    report = fuzz(schema)
    print(report)
    assert not report.failures and not report.errors, report
    assert set(report.statuses) == {"POST /jobs", "POST /sweeps"}, report
    # Valid bodies were queued, in the isolated database only: a task per job, a task per sweep group.
    isolated = isolated_jobs_app.extensions["echo"].redis
    assert report.statuses["POST /jobs"][202] and report.statuses["POST /sweeps"][202], report
    groups = sum(
        len(json.loads(isolated.hget(f"echo-rnn:sweep:{s.decode()}", "groups")))
        for s in isolated.zrange("echo-rnn:sweeps", 0, -1)
    )
    plain = sum(
        isolated.hget(f"echo-rnn:job:{j.decode()}", "sweep") == b"null" for j in isolated.zrange("echo-rnn:jobs", 0, -1)
    )
    # One in the broker (no worker announced itself in this database), the rest waiting their turn in Redis.
    assert plain and isolated.llen("celery") + len(Dispatch(isolated).waiting()) == groups + plain, report
    assert redis_client.zcard("echo-rnn:jobs") == stack_jobs


# Hand-written cases the fuzzer is unlikely to hit; tests/service/test_api.py has the rest.


def _fields(body: dict) -> set[str]:
    return {e["field"] for e in body["errors"]}


@pytest.mark.parametrize(
    "raw, bad",
    [
        # JSON's own non-finite spellings, which Python's json module reads as floats.
        ('{"learning_rate": NaN}', {"learning_rate"}),
        ('{"learning_rate": Infinity}', {"learning_rate"}),
        ('{"learning_rate": -Infinity}', {"learning_rate"}),
        ('{"learning_rate": 1e999}', {"learning_rate"}),
        # Types JSON has but the document does not allow: no coercion to integers.
        ('{"seed": false}', {"seed"}),
        ('{"num_epochs": true}', {"num_epochs"}),
        ('{"num_epochs": "3"}', {"num_epochs"}),
        ('{"num_epochs": 2.5}', {"num_epochs"}),
        ('{"device": 1}', {"device"}),
        ('{"num_epochs": null}', {"num_epochs"}),
        ('{"num_epochs": [1]}', {"num_epochs"}),
        ('{"seed": 4294967296}', {"seed"}),
        ('{"seed": 123456789012345678901234567890}', {"seed"}),
    ],
)
def test_wrong_types_and_non_finite_values_name_the_field(client, raw, bad):
    assert _fields(problem(client.post("/jobs", data=raw, content_type="application/json"), 422)) == bad


@pytest.mark.parametrize("raw", ["", "null", '"text"', "3", "{", '{"a": 1,}', "\xff\xfe"])
def test_bodies_that_are_not_json_objects(client, raw):
    for path in ("/jobs", "/predict"):
        resp = client.post(path, data=raw.encode("latin-1"), content_type="application/json")
        assert resp.status_code in (400, 422), (path, raw, resp.status_code)
        problem(resp, resp.status_code)


def test_missing_or_odd_content_types_are_415(client):
    for path in ("/jobs", "/predict"):
        problem(client.post(path, data='{"sequences": ["01"]}'), 415)
        problem(client.post(path, data='{"sequences": ["01"]}', content_type="application/json-patch+json"), 415)
        problem(client.post(path, data='{"sequences": ["01"]}', content_type="multipart/form-data; boundary=x"), 415)


def test_predict_bodies_name_the_field(client):
    assert _fields(problem(client.post("/predict", json={"sequences": ["01"], "colour": 1}), 422)) == {"colour"}
    assert _fields(problem(client.post("/predict", json={"sequences": "0101"}), 422)) == {"sequences"}
    assert _fields(problem(client.post("/predict", json={"sequences": ["012"]}), 422)) == {"sequences.0"}
    assert _fields(problem(client.post("/predict", json={}), 422)) == {"sequences"}
    problem(
        client.post("/predict", data=json.dumps({"sequences": ["1" * (1024 * 1024)]}), content_type="application/json"),
        413,
    )


# Arabic-Indic and fullwidth digits on purpose: str.isdigit() takes them, the API must not.
@pytest.mark.parametrize("sequence", ["٠١", "０１", "1 0", "0x1", "-1", "1.0", "1\n", "\x00"])  # noqa: RUF001
def test_sequences_are_ascii_bits_only(client, sequence):
    body = problem(client.get("/predict", query_string={"sequence": sequence}), 422)
    assert _fields(body) == {"sequence"} and "0 and 1" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "ref",
    [
        "nonsense",
        "models:/echo-rnn/",
        "models:/echo-rnn/٣",
        "models:/echo-rnn/123456789012345678901",
        "models:/echo-rnn@",
        "models:/echo-rnn@a b",
        "0" * 31,
        "0" * 33,
        "A" * 32,
        "x" * 201,
    ],
)
def test_malformed_model_references_name_the_field(client, ref):
    for resp, location in (
        (client.get("/predict", query_string={"sequence": "01", "model": ref}), "query"),
        (client.post("/predict", json={"sequences": ["01"], "model": ref}), "body"),
    ):
        body = problem(resp, 422)
        assert _fields(body) == {"model"} and body["errors"][0]["location"] == location


def test_the_longest_sequences_pass_the_http_server(stack, trained_job):
    """GET's longest query and POST's longest sequence reach the app; one bit more is a 413 problem."""
    bits = ("0110" * (MAX_SEQUENCE_BITS // 4 + 1))[:MAX_SEQUENCE_BITS]
    resp = requests.get(
        f"{stack.api}/predict", params={"sequence": bits[:MAX_QUERY_BITS], "model": trained_job["id"]}, timeout=60
    )
    assert resp.status_code == 200, resp.text[:300]
    body = resp.json()
    assert body["sequence"] == bits[:MAX_QUERY_BITS] and len(body["echo"]) == MAX_QUERY_BITS
    assert all(0 <= p <= 1 and math.isfinite(p) for p in body["probabilities"])
    resp = requests.get(
        f"{stack.api}/predict", params={"sequence": bits[: MAX_QUERY_BITS + 1], "model": trained_job["id"]}, timeout=60
    )
    assert resp.status_code == 413 and resp.headers["Content-Type"].startswith(PROBLEM), resp.text[:300]
    assert "POST /predict" in resp.json()["detail"]
    resp = requests.post(f"{stack.api}/predict", json={"sequences": [bits], "model": trained_job["id"]}, timeout=60)
    assert resp.status_code == 200 and len(resp.json()["results"][0]["echo"]) == MAX_SEQUENCE_BITS, resp.text[:300]
    resp = requests.post(f"{stack.api}/predict", json={"sequences": [bits + "1"]}, timeout=60)
    assert resp.status_code == 413 and resp.headers["Content-Type"].startswith(PROBLEM), resp.text[:300]
