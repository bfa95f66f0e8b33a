"""Liveness and readiness."""

import requests
from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from service.endpoints import Answer, Endpoint, route
from service.problems import response
from service.routes import services
from service.schemas import Health, Ready

bp = Blueprint("health", __name__)


@route(bp, Endpoint("get", "/healthz", (Answer(200, Health),)))
def healthz() -> Response:
    """The process is alive."""
    return jsonify(status="ok")


@route(bp, Endpoint("get", "/readyz", (Answer(200, Ready),), (503,)))
def readyz() -> Response:
    """200 when Redis and MLflow answer; 503 naming those that do not."""
    s = services()
    down = []
    try:
        s.redis.ping()
    except RedisError:
        down.append("redis")
    try:
        requests.get(f"{s.settings.mlflow_tracking_uri.rstrip('/')}/health", timeout=2).raise_for_status()
    except requests.RequestException:
        down.append("mlflow")
    if down:
        return response(503, "Service Unavailable", f"not answering: {', '.join(down)}", headers={"Retry-After": "5"})
    return jsonify(status="ready", redis="ok", mlflow="ok")
