"""The OpenAPI document: generated from the schemas, complete, and true to what the API answers."""

import re

import jsonschema
import pytest

from service.model_versions import ModelInfo
from service.openapi import document, too_large
from service.schemas import ModelOut
from service.settings import Settings

STATIC_FILES = {"/docs/assets/<path:name>", "/static/<path:filename>"}


@pytest.fixture
def spec(client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    return resp.get_json()


def test_every_route_and_error_is_documented(client, spec):
    assert spec["openapi"].startswith("3.1")
    app = client.application
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule), m.lower())
        for r in app.url_map.iter_rules()
        for m in r.methods - {"HEAD", "OPTIONS"}
        if r.rule not in STATIC_FILES
    }
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert routes == documented
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["summary"], (path, method)
            problems = [c for c, r in op["responses"].items() if c[0] in "45"]
            for code in problems:
                assert "application/problem+json" in op["responses"][code]["content"]


def test_the_request_schema_is_the_one_that_validates(spec):
    params = spec["components"]["schemas"]["TrainingParams"]
    assert params["additionalProperties"] is False
    assert params["properties"]["num_epochs"]["default"] == 100
    assert params["properties"]["learning_rate"]["exclusiveMinimum"] == 0
    body = spec["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/TrainingParams"}


def _resolve(spec, name):
    """A validator of one component schema, its $refs resolved inside the document."""
    root = {**spec, "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(root)


def test_answers_match_the_document(client, spec, trained_job):
    job = client.get(f"/jobs/{trained_job['id']}").get_json()
    _resolve(spec, "Job").validate(job)
    _resolve(spec, "JobList").validate(client.get("/jobs?limit=3").get_json())
    _resolve(spec, "PredictOne").validate(client.get(f"/predict?sequence=0110&model={trained_job['id']}").get_json())
    _resolve(spec, "PredictMany").validate(client.post("/predict", json={"sequences": ["01", "1"]}).get_json())
    _resolve(spec, "ModelList").validate(client.get("/models").get_json())
    _resolve(spec, "ProblemDoc").validate(client.post("/jobs", json={"num_epochs": -1}).get_json())


def test_swagger_ui_is_served(client):
    page = client.get("/docs")
    assert page.status_code == 200 and b"SwaggerUIBundle" in page.data
    script = client.get("/docs/assets/js/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.data) > 100_000


def test_the_document_is_built_from_the_app(client):
    assert document(client.application)["paths"].keys() == client.get("/openapi.json").get_json()["paths"].keys()


def test_a_413_is_documented_with_the_settings_limits():
    settings = Settings(
        redis_url="redis://127.0.0.1:1", mlflow_tracking_uri="http://127.0.0.1:1", max_sequences=7, max_body_bytes=2048
    )
    assert too_large(settings) == (
        "Body over 2,048 bytes (MAX_BODY_BYTES), a sequence over 100,000 bits (MAX_SEQUENCE_BITS) "
        "or over 7 sequences (MAX_SEQUENCES)"
    )


def test_the_answered_model_has_the_documented_fields():
    info = ModelInfo("echo-rnn", "3", "models:/echo-rnn/3", "run", "job")
    assert list(info.as_dict()) == list(ModelOut.model_fields)
