"""The registered model versions."""

from flask import Blueprint, Response, jsonify

from service.mlflow_errors import call_mlflow
from service.model_versions import list_versions
from service.endpoints import Answer, Endpoint, route
from service.routes import services
from service.schemas import ModelList

bp = Blueprint("models", __name__)


@route(bp, Endpoint("get", "/models", (Answer(200, ModelList),), (503,), access="models"))
def index() -> Response:
    """Registered versions, newest first, with their run, job and final metrics."""
    s = services()
    return jsonify(models=call_mlflow(lambda: list_versions(s.mlflow, s.settings.registered_model, s.settings.champion_alias)))
