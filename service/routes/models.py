"""The registered model versions, and adding the served form to versions made before it existed."""

import uuid

from flask import Blueprint, Response, jsonify
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from contract import tasks
from service import auth
from service.endpoints import Answer, Endpoint, route
from service.mlflow_errors import call_mlflow
from service.model_versions import hide_unseen_jobs, list_versions
from service.problems import Problem, redis_down
from service.routes import parse, query_args, services
from service.schemas import BackfillQueued, ModelList, ModelListQuery

bp = Blueprint("models", __name__)


@route(
    bp,
    Endpoint(
        "get",
        "/models",
        (Answer(200, ModelList),),
        (400, 422, 429, 503),
        query=ModelListQuery,
        access="models",
        rate_limit="models",
        error_notes={429: "Over this client's RATE_LIMIT_MODELS"},
    ),
)
def index() -> Response:
    """Registered versions, newest first, a page at a time, with their run, job (when the caller may see it) and final metrics; ?limit=, ?cursor=."""
    query = parse(ModelListQuery, query_args(), "query")
    s = services()
    listed, cursor = call_mlflow(
        lambda: list_versions(
            s.mlflow, s.settings.registered_model, s.settings.champion_alias, query.limit, query.cursor
        )
    )
    if not auth.sees_everything():
        call_mlflow(lambda: hide_unseen_jobs(listed, s.jobs.owners, auth.can_see))  # a Redis failure is a 503 too
    return jsonify(models=listed, next_cursor=cursor)


@route(
    bp,
    Endpoint(
        "post",
        "/models/backfill",
        (Answer(202, BackfillQueued),),
        (403, 503),
        access="jobs",
        error_notes={403: "Only an admin token may ask for it, when tokens are on."},
    ),
)
def backfill() -> Response:
    """Queue a worker task that writes the ONNX graph the API serves for each version registered before it existed."""
    if not auth.sees_everything():
        raise Problem(403, "Forbidden", "only an admin token (API_ADMIN_TOKENS) may backfill the models")
    message = tasks.backfill_serving(f"backfill-{uuid.uuid4()}")
    try:
        tasks.send(services().celery, message)
    except (OperationalError, RedisError) as exc:
        raise redis_down("nothing was queued") from exc
    resp = jsonify(
        task_id=message.task_id,
        detail="a worker adds the ONNX graph to every version that lacks one; "
        "GET /models shows them served once it is done",
    )
    resp.status_code = 202
    return resp
