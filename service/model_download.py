"""Fetching a registered version's saved model from MLflow's artifact store."""

import mlflow.artifacts
from mlflow.tracking import MlflowClient

from service.model_versions import ModelInfo


def download(client: MlflowClient, info: ModelInfo, into: str) -> str:
    """Download the version's model directory under into; returns its local path."""
    # From the artifact location directly: models:/ URIs would consult the process-global
    # registry URI, not this client's server.
    version = client.get_model_version(info.name, info.version)
    if version.model_id:
        location = client.get_logged_model(version.model_id).artifact_location
    else:
        location = client.get_model_version_download_uri(info.name, info.version)
    return mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=into, tracking_uri=client.tracking_uri)
