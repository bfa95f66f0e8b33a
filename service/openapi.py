"""The OpenAPI 3.1 document, generated from the endpoint declarations and the pydantic schemas that validate requests."""

from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service import auth, endpoints, limits, schemas
from service.endpoints import Answer, Endpoint
from service.settings import Settings

REF = "#/components/schemas/{model}"
PROBLEM = "application/problem+json"
ERRORS = {
    400: "Bad JSON or a repeated query parameter",
    401: "No bearer token, or not a valid one (WWW-Authenticate: Bearer)",
    403: "A model this service did not produce, or whose files changed (detail says which); never loaded",
    404: "Unknown job or model",
    405: "Method not allowed",
    409: "The job has already finished",
    415: "The body is not application/json",
    422: "Invalid input; errors names each field",
    429: "Over this client's rate limit; retry after Retry-After seconds",
    503: "Redis (then with Retry-After) or MLflow is not answering",
}
BEARER = "bearerAuth"
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "One of the API's tokens (API_TOKENS). Operations that list this scheme need one here.",
}


def document(app: Flask) -> dict[str, Any]:
    """Build the document for the app's declared endpoints under its settings; summaries are the views' docstrings."""
    declared = endpoints.declared(app)
    models = {m for e in declared.values() for m in _models(e)} | {schemas.ProblemDoc}
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    components = defs.get("$defs", {})
    settings = app.extensions["echo"].settings
    errors = {**ERRORS, 413: too_large(settings)}
    paths: dict[str, dict] = {}
    for name, endpoint in sorted(declared.items(), key=lambda item: item[1].path):
        summary = (app.view_functions[name].__doc__ or "").strip().splitlines()[0]
        op = _operation(name, endpoint, summary, components)
        protected, limit = auth.needs_token(endpoint, settings), limits.limit_of(endpoint, settings)
        codes = {*endpoint.errors, 405} | ({401} if protected else set()) | ({429} if limit else set())
        for code in sorted(codes):
            op["responses"][str(code)] = _content(
                PROBLEM, schemas.ProblemDoc, endpoint.error_notes.get(code, errors[code])
            )
        if protected:
            op["security"] = [{BEARER: []}]
            op["responses"]["401"]["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}
            }
        if limit:
            op["description"] = f"Rate limit per client: {limit}."
            op["responses"]["429"]["headers"] = {
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}
            }
        op["responses"] = dict(sorted(op["responses"].items()))
        paths.setdefault(endpoint.openapi_path, {})[endpoint.method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "echo-rnn-service",
            "version": "0.1.0",
            "description": "Train and serve the echo RNN of Erik Hallström's TensorFlow tutorial.",
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {BEARER: SECURITY_SCHEME}},
    }


def too_large(settings: Settings) -> str:
    """What a 413 means under these settings: the body's and POST /predict's limits."""
    return (
        f"Body over {settings.max_body_bytes:,} bytes (MAX_BODY_BYTES), a sequence over {settings.max_sequence_bits:,} "
        f"bits (MAX_SEQUENCE_BITS) or over {settings.max_sequences:,} sequences (MAX_SEQUENCES)"
    )


def _models(endpoint: Endpoint) -> list[type[BaseModel]]:
    schemas_used = [endpoint.body, endpoint.query, *(a.schema for a in endpoint.answers)]
    return [s for s in schemas_used if isinstance(s, type) and issubclass(s, BaseModel)]


def _operation(name: str, endpoint: Endpoint, summary: str, components: dict) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": name.replace(".", "_"),
        "summary": summary,
        "parameters": _path_params(endpoint)
        + (_query_params(endpoint.query, components) if endpoint.query else [])
        + list(endpoint.headers),
        "responses": {str(a.status): _answer(a) for a in endpoint.answers},
    }
    if not op["parameters"]:
        del op["parameters"]
    if endpoint.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=endpoint.body.__name__)}}},
        }
    return op


def _answer(answer: Answer) -> dict[str, Any]:
    out = _content(answer.media, answer.schema, answer.description)
    if answer.headers:
        out["headers"] = answer.headers
    return out


def _content(mime: str, schema: type[BaseModel] | dict, description: str) -> dict:
    body = schema if isinstance(schema, dict) else {"$ref": REF.format(model=schema.__name__)}
    return {"description": description, "content": {mime: {"schema": body}}}


def _path_params(endpoint: Endpoint) -> list[dict]:
    names = [part[1:-1] for part in endpoint.openapi_path.split("/") if part.startswith("{")]
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


def _query_params(model: type[BaseModel], components: dict) -> list[dict]:
    properties = components[model.__name__]["properties"]
    required = set(components[model.__name__].get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": schema}
        for name, schema in properties.items()
    ]
