"""The OpenAPI document and Swagger UI."""

import importlib.util
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, send_from_directory

from service.endpoints import Answer, Endpoint, route
from service.openapi import document


def _swagger_assets() -> Path:
    """Swagger UI 5 (OpenAPI 3.1) as packaged on PyPI; found without importing its Flask plugin."""
    spec = importlib.util.find_spec("flask_openapi3_swagger")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("flask-openapi3-swagger is not installed")
    return Path(spec.submodule_search_locations[0]) / "templates" / "swagger"


ASSETS = _swagger_assets()

bp = Blueprint("docs", __name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>echo-rnn-service API</title>
<link rel="stylesheet" href="/docs/assets/css/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/js/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>"""


@route(bp, Endpoint("get", "/openapi.json", (Answer(200, {"type": "object"}),)))
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API."""
    cached = current_app.extensions.setdefault("openapi", document(current_app))
    return jsonify(cached)


@route(bp, Endpoint("get", "/docs", (Answer(200, {"type": "string"}, media="text/html"),)))
def swagger_ui() -> Response:
    """Swagger UI on the OpenAPI document."""
    return Response(PAGE, mimetype="text/html")


@bp.get("/docs/assets/<path:name>")
def assets(name: str) -> Response:
    """Swagger UI's scripts and styles."""
    return send_from_directory(ASSETS, name, max_age=86400)
