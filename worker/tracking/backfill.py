"""Adding the ONNX graph the API serves to versions registered before workers wrote it (a one-off task).

Only versions this service recorded are touched, and only when their SavedModel still has the digest
recorded for it: the graph is built from those weights, uploaded beside them, and its digest added
to the version's record. Runs in a worker child (it loads SavedModels with TensorFlow).
"""

import dataclasses
import logging
import tempfile
from pathlib import Path

import mlflow.artifacts
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from redis import Redis

from contract import provenance
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def backfill(redis: Redis, settings: WorkerSettings) -> dict[str, list[str]]:
    """Every recorded version without a served graph gets one; returns the versions added, and those left and why."""
    from worker.engine.forward import WEIGHT_NAMES

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    name, prefix = settings.registered_model, settings.job_key_prefix
    added, left = [], []
    for version in client.search_model_versions(f"name = '{name}'", max_results=10_000):
        record = provenance.lookup(redis, prefix, name, version.version)
        if record is None or record.serving_digest is not None:
            continue
        location = (
            client.get_logged_model(version.model_id).artifact_location
            if version.model_id
            else client.get_model_version_download_uri(name, version.version)
        )
        with tempfile.TemporaryDirectory(prefix="echo-rnn-backfill-") as tmp:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=location, dst_path=tmp, tracking_uri=client.tracking_uri
                )
            )
            if provenance.digest(local) != record.digest:
                left.append(f"{version.version}: its files changed since it was registered")
                continue
            import tensorflow as tf

            from worker.engine import onnx_graph

            module = tf.saved_model.load(str(local / provenance.SAVED_MODEL_DIR))
            if not hasattr(module, "weights"):
                left.append(f"{version.version}: saved without its weights as variables")
                continue
            weights = {n: v.numpy() for n, v in zip(WEIGHT_NAMES, module.weights)}
            graph = onnx_graph.build(weights, int(module.echo_step.numpy()))
            (local / provenance.SERVING_FILE).write_bytes(graph)
            get_artifact_repository(location, tracking_uri=client.tracking_uri).log_artifact(
                str(local / provenance.SERVING_FILE)
            )
        provenance.record(
            redis,
            prefix,
            dataclasses.replace(
                record,
                serving_digest=provenance.file_digest(graph),
                serving_uri=provenance.serving_uri(location),
            ),
        )
        log.info("version %s of %s: its ONNX graph added", version.version, name)
        added.append(version.version)
    return {"added": added, "left": left}
