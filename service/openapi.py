"""The OpenAPI 3.1 document, generated from the same pydantic schemas that validate requests."""

from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service import schemas
from worker.params import TrainingParams

REF = "#/components/schemas/{model}"
PROBLEM = "application/problem+json"
ERRORS = {
    400: "Bad JSON or a repeated query parameter",
    404: "Unknown job or model",
    405: "Method not allowed",
    409: "The job has already finished",
    413: "Body over 1 MiB, a sequence over 100,000 bits or over 1,000 sequences",
    415: "The body is not application/json",
    422: "Invalid input; errors names each field",
    503: "Redis or MLflow is not answering",
}

# (method, path, view endpoint, body schema, query schema, success status, success schema, error statuses)
OPERATIONS: list[tuple[str, str, str, type | None, type | None, int, type, list[int]]] = [
    ("post", "/jobs", "jobs.submit", TrainingParams, None, 202, schemas.Job, [400, 413, 415, 422, 503]),
    ("get", "/jobs", "jobs.index", None, schemas.JobListQuery, 200, schemas.JobList, [400, 422, 503]),
    ("get", "/jobs/{job_id}", "jobs.show", None, None, 200, schemas.Job, [404, 503]),
    ("delete", "/jobs/{job_id}", "jobs.cancel", None, None, 200, schemas.Job, [404, 409, 503]),
    ("get", "/predict", "predict.predict_one", None, schemas.PredictQuery, 200, schemas.PredictOne, [400, 404, 413, 422, 503]),
    ("post", "/predict", "predict.predict_many", schemas.PredictBody, None, 200, schemas.PredictMany, [400, 404, 413, 415, 422, 503]),
    ("get", "/models", "models.index", None, None, 200, schemas.ModelList, [503]),
    ("get", "/healthz", "health.healthz", None, None, 200, schemas.Health, []),
    ("get", "/readyz", "health.readyz", None, None, 200, schemas.Ready, [503]),
]

# Endpoints that answer documents rather than JSON resources: (path, endpoint, media type, schema).
RAW = [
    ("/openapi.json", "docs.openapi", "application/json", {"type": "object"}),
    ("/docs", "docs.swagger_ui", "text/html", {"type": "string"}),
    ("/metrics", "metrics", "text/plain", {"type": "string"}),
]


def document(app: Flask) -> dict[str, Any]:
    """Build the document; summaries are the views' docstrings."""
    models = {op[i] for op in OPERATIONS for i in (3, 4, 6) if op[i] is not None} | {schemas.ProblemDoc}
    _, defs = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF)
    components = defs.get("$defs", {})
    paths: dict[str, dict] = {}
    for method, path, endpoint, body, query, status, result, errors in OPERATIONS:
        view = app.view_functions[endpoint]
        op: dict[str, Any] = {
            "operationId": endpoint.replace(".", "_"),
            "summary": (view.__doc__ or "").strip().splitlines()[0],
            "parameters": _path_params(path) + (_query_params(query, components) if query else []),
            "responses": {str(status): _content("application/json", result, _describe(status, method))},
        }
        if endpoint == "jobs.cancel":
            op["responses"]["202"] = _content("application/json", schemas.Job, "Cancellation requested for a running job")
        if endpoint == "jobs.submit":
            op["responses"]["202"]["headers"] = {"Location": {"schema": {"type": "string"}, "description": "The job's URL"}}
        if body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model=body.__name__)}}}}
        for code in errors + [405]:
            op["responses"][str(code)] = _content(PROBLEM, schemas.ProblemDoc, ERRORS[code])
        paths.setdefault(path, {})[method] = op
    for path, endpoint, mime, schema in RAW:
        view = app.view_functions[endpoint]
        paths[path] = {"get": {
            "operationId": endpoint.replace(".", "_"), "summary": (view.__doc__ or "").strip().splitlines()[0],
            "responses": {"200": {"description": "OK", "content": {mime: {"schema": schema}}}},
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "echo-rnn-service", "version": "0.1.0",
                 "description": "Train and serve the echo RNN of Erik Hallström's TensorFlow tutorial."},
        "paths": paths,
        "components": {"schemas": components},
    }


def _describe(status: int, method: str) -> str:
    return {202: "Accepted: the job is queued"}.get(status, "OK")


def _content(mime: str, model: type[BaseModel], description: str) -> dict:
    return {"description": description, "content": {mime: {"schema": {"$ref": REF.format(model=model.__name__)}}}}


def _path_params(path: str) -> list[dict]:
    return [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}] if "{job_id}" in path else []


def _query_params(model: type[BaseModel], components: dict) -> list[dict]:
    properties = components[model.__name__]["properties"]
    required = set(components[model.__name__].get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": schema}
        for name, schema in properties.items()
    ]
