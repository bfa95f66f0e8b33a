"""Liveness and readiness."""

import requests
from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from service import redis_memory
from service.endpoints import Answer, Endpoint, route
from service.problems import REDIS_RETRY_AFTER_S, response
from service.routes import services
from service.schemas import Health, Ready

bp = Blueprint("health", __name__)


@route(bp, Endpoint("get", "/healthz", (Answer(200, Health),)))
def healthz() -> Response:
    """The process is alive."""
    return jsonify(status="ok")


@route(
    bp,
    Endpoint(
        "get",
        "/readyz",
        (Answer(200, Ready),),
        (503,),
        error_notes={
            503: "Redis or MLflow does not answer, or Redis is at its maxmemory (it refuses writes: no job can be submitted)"
        },
    ),
)
def readyz() -> Response:
    """200 when Redis and MLflow answer (degraded when Redis is near its maxmemory); 503 naming what does not."""
    s = services()
    down, full, memory = [], "", None
    try:
        memory = redis_memory.read(s.redis)
        if not redis_memory.takes_writes(s.redis, s.settings.job_key_prefix):
            full = (
                f"redis is full ({memory.used / 2**20:.0f} MiB of its maxmemory of {memory.max / 2**20:.0f} MiB) "
                "and refuses writes"
            )
    except RedisError:
        down.append("redis")
    fraction = memory.fraction if memory else None
    try:
        requests.get(f"{s.settings.mlflow_tracking_uri.rstrip('/')}/health", timeout=2).raise_for_status()
    except requests.RequestException:
        down.append("mlflow")
    if down or full:
        detail = "; ".join(filter(None, [f"not answering: {', '.join(down)}" if down else "", full]))
        return response(503, "Service Unavailable", detail, headers={"Retry-After": str(REDIS_RETRY_AFTER_S)})
    near = fraction is not None and fraction >= s.settings.redis_memory_warn_fraction
    return jsonify(
        status="degraded" if near else "ready",
        redis=f"near its maxmemory ({fraction:.0%})" if near else "ok",
        mlflow="ok",
        redis_memory=None if fraction is None else round(fraction, 4),
    )
