"""The registered model versions."""

from flask import Blueprint, Response, jsonify

from service.routes import services
from worker.jobs import iso

bp = Blueprint("models", __name__)


@bp.get("/models")
def index() -> Response:
    """Registered versions, newest first, with their run, job and final metrics."""
    s = services()
    registry = s.models

    def listing() -> list[dict]:
        versions = s.mlflow.search_model_versions(f"name = '{registry.name}'", order_by=["version_number DESC"])
        out = []
        for v in versions:
            metrics = s.mlflow.get_run(v.run_id).data.metrics if v.run_id else {}
            out.append(
                {
                    "name": v.name,
                    "version": str(v.version),
                    "uri": f"models:/{v.name}/{v.version}",
                    "aliases": list(v.aliases or []),
                    "run_id": v.run_id,
                    "job_id": (v.tags or {}).get("job_id"),
                    "created_at": iso(v.creation_timestamp),
                    "metrics": {k: metrics.get(k) for k in ("loss", "epoch_loss", "echo_accuracy")},
                }
            )
        return out

    return jsonify(models=registry.call_mlflow(listing))
