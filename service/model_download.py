"""Fetching a registered version's ONNX graph from MLflow's artifact store: that one file, never the whole model."""

import os
import tempfile

import mlflow.artifacts
from mlflow.tracking import MlflowClient

from contract import provenance
from contract.mlflow_names import FILE_ABSENT_CODES
from contract.provenance import Provenance
from service.model_versions import ModelInfo


def location_of(client: MlflowClient, info: ModelInfo) -> str:
    """Where the version's model directory lives in the artifact store."""
    # From the artifact location directly: models:/ URIs would consult the process-global
    # registry URI, not this client's server.
    if info.model_id:
        return client.get_logged_model(info.model_id).artifact_location
    return client.get_model_version_download_uri(info.name, info.version)


def download_graph(client: MlflowClient, info: ModelInfo, record: Provenance) -> bytes | None:
    """The version's ONNX graph (None when it has none), read whole only when within the size bound.

    Where it is comes from the version's record when its worker wrote it there (one round trip fewer).
    """
    uri = record.serving_uri or provenance.serving_uri(location_of(client, info))
    with tempfile.TemporaryDirectory(prefix="echo-rnn-model-") as into:
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=into, tracking_uri=client.tracking_uri
            )
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code in FILE_ABSENT_CODES:
                return None
            raise
        if os.path.getsize(path) > provenance.SERVING_MAX_BYTES:
            return b"\0" * (provenance.SERVING_MAX_BYTES + 1)  # refused by its size, never read
        with open(path, "rb") as file:
            return file.read()
