"""The OpenAPI 3.1 document, generated from the same pydantic schemas that validate requests."""

from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service import auth, idempotency, limits, schemas
from worker.params import TrainingParams

REF = "#/components/schemas/{model}"
PROBLEM = "application/problem+json"
ERRORS = {
    400: "Bad JSON or a repeated query parameter",
    401: "No bearer token, or not a valid one (WWW-Authenticate: Bearer)",
    404: "Unknown job or model",
    405: "Method not allowed",
    409: "The job has already finished",
    413: "Body over 1 MiB, a sequence over 100,000 bits or over 1,000 sequences",
    415: "The body is not application/json",
    422: "Invalid input; errors names each field",
    429: "Over this client's rate limit; retry after Retry-After seconds",
    503: "Redis or MLflow is not answering",
}
# What an error means on one operation, where it differs from ERRORS.
ERRORS_OF = {
    "jobs.submit": {
        409: f"A request with the same {idempotency.HEADER} is still being processed; retry after Retry-After",
        422: f"Invalid parameters (errors names each field), a malformed {idempotency.HEADER}, "
             f"or an {idempotency.HEADER} already used with a different body",
    },
}
BEARER = "bearerAuth"

# (method, path, view endpoint, body schema, query schema, success status, success schema, error statuses)
OPERATIONS: list[tuple[str, str, str, type | None, type | None, int, type, list[int]]] = [
    ("post", "/jobs", "jobs.submit", TrainingParams, None, 202, schemas.Job, [400, 409, 413, 415, 422, 503]),
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
    settings = app.extensions["echo"].settings
    protected, limited = auth.protected_endpoints(settings), limits.limited_endpoints(settings)
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
            op["parameters"].append(IDEMPOTENCY_KEY)
            op["responses"]["202"]["headers"] = {"Location": {"schema": {"type": "string"}, "description": "The job's URL"}}
            op["responses"]["200"] = _content(
                "application/json", schemas.Job,
                f"The job an earlier request with the same {idempotency.HEADER} and body made, as it is now; "
                "nothing new was queued")
            op["responses"]["200"]["headers"] = {
                "Location": {"schema": {"type": "string"}, "description": "The job's URL"},
                idempotency.REPLAYED: {"schema": {"type": "string", "const": "true"},
                                       "description": "This answer replays an earlier submission"},
            }
        if body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model=body.__name__)}}}}
        codes = list(errors)
        if endpoint in protected:
            op["security"] = [{BEARER: []}]
            codes.append(401)
        if endpoint in limited:
            codes.append(429)
            op["description"] = f"Rate limit per client: {limited[endpoint]}."
        for code in sorted(set(codes)) + [405]:
            op["responses"][str(code)] = _content(PROBLEM, schemas.ProblemDoc, ERRORS_OF.get(endpoint, {}).get(code, ERRORS[code]))
        if endpoint in protected:
            op["responses"]["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
        if endpoint in limited:
            op["responses"]["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
        op["responses"] = dict(sorted(op["responses"].items()))
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
        "components": {"schemas": components, "securitySchemes": {BEARER: {
            "type": "http", "scheme": "bearer",
            "description": "One of the API's tokens (API_TOKENS). Operations that list this scheme need one here.",
        }}},
    }


IDEMPOTENCY_KEY = {
    "name": idempotency.HEADER, "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_CHARS},
    "description": "Any unique string (a UUID): the same key with the same body answers the job the first request made "
                   "(200) instead of queueing another; kept 24 h (IDEMPOTENCY_TTL_S), per token when tokens are on.",
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
