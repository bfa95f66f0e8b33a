"""Logging the trained network as an MLflow TensorFlow model and registering a version."""

import tempfile

import numpy as np
import mlflow.tensorflow
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Schema, TensorSpec

from contract import provenance
from worker.engine.export import EchoModel, build
from worker.engine.train import TrainingResult
from worker.retry import Outage
from worker.mlflow_retry import mlflow_outage

SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.int32), (-1, -1))]),  # unnamed: pyfunc passes a plain array
    outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1), "p_one")]),
)


def log_and_register(
    client: MlflowClient, run_id: str, job_id: str, result: TrainingResult, name: str, outage: Outage | None = None,
    module: EchoModel | None = None,
) -> dict:
    """Log the model into the run, register it under name; returns uri, name, version (and digest, when logged here).

    Each MLflow step is retried through outage (the job's RunLogger.outage) while MLflow is
    unreachable; without one, a step gets a single try. Registering is idempotent: a run that
    already has a version of name (a retry after a lost answer, a resumed job) keeps that one.
    A module from export.traced(params) skips tracing; without one, the module is built here.
    """
    outage = outage or mlflow_outage(client.tracking_uri, 0)
    existing = outage.call(lambda: _version_of_run(client, name, run_id), "logging the model")
    if existing is None:
        logged = log_model(client, run_id, job_id, result, outage, module)
        return {**register(client, run_id, job_id, logged, name, outage), "digest": logged["digest"]}
    return {"uri": f"models:/{name}/{existing.version}", "name": name, "version": str(existing.version)}


def log_model(client: MlflowClient, run_id: str, job_id: str, result: TrainingResult, outage: Outage,
              module: EchoModel | None = None) -> dict:
    """Log the trained network into the run as an MLflow TensorFlow model; returns its model_uri and model_id."""
    import tensorflow as tf

    module = module.set_weights(result.weights) if module is not None else build(result.weights, result.params.echo_step)
    # MLflow's model logging goes through the global tracking URI; point it at this run's server.
    mlflow.set_tracking_uri(client.tracking_uri)

    def log():
        # MLflow files a logged model under the active experiment (Default, id 0, when none is set): the
        # run's own, where the service account may write when MLflow asks for logins.
        mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
        return Model.log(
            artifact_path=None,
            name="model",
            flavor=flavor,
            run_id=run_id,
            model=module,
            # No input example: MLflow would load and run the model to check it, about half a
            # second of every job's finish; the signature above says what the model takes.
            signature=SIGNATURE,
            # Explicit requirements: inferring them costs seconds for this tiny model.
            pip_requirements=[f"tensorflow=={tf.__version__}", f"mlflow=={mlflow.__version__}"],
            tags={"job_id": job_id},
        )

    flavor = _DigestingFlavor()
    info = outage.call(log, "logging the model")
    return {"model_uri": info.model_uri, "model_id": info.model_id, "digest": flavor.digest}


class _DigestingFlavor:
    """mlflow.tensorflow, keeping the digest of the SavedModel it wrote: the files MLflow then uploads as they are,
    so the digest the API checks needs no download of them back."""

    __name__ = mlflow.tensorflow.__name__
    digest: str | None = None

    def save_model(self, path: str, **kwargs) -> None:
        """Save as mlflow.tensorflow does, then take the digest."""
        mlflow.tensorflow.save_model(path=path, **kwargs)
        self.digest = provenance.digest(path)


def register(client: MlflowClient, run_id: str, job_id: str, logged: dict, name: str, outage: Outage) -> dict:
    """Register a model logged by log_model as a version of name (the run's version if it has one already)."""
    outage.call(lambda: _ensure_registered_model(client, name), "registering the model")

    def create_version():
        return _version_of_run(client, name, run_id) or client.create_model_version(
            name, source=logged["model_uri"], run_id=run_id, tags={"job_id": job_id}, model_id=logged["model_id"])

    version = outage.call(create_version, "registering the model version")
    return {"uri": f"models:/{name}/{version.version}", "name": name, "version": str(version.version)}


def files_digest(client: MlflowClient, name: str, version: str, outage: Outage) -> str:
    """The digest of a registered version's files as the artifact store holds them (what the API will check)."""
    import mlflow.artifacts

    def fetch() -> str:
        found = client.get_model_version(name, version)  # located as the API locates it (service/model_download.py)
        location = (client.get_logged_model(found.model_id).artifact_location if found.model_id
                    else client.get_model_version_download_uri(name, version))
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=client.tracking_uri)
            return provenance.digest(path)

    return outage.call(fetch, "reading back the model's files")


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _version_of_run(client: MlflowClient, name: str, run_id: str):
    """The version of name registered from this run, if there is one."""
    found = [v for v in client.search_model_versions(f"run_id = '{run_id}'") if v.name == name]
    return max(found, key=lambda v: int(v.version)) if found else None
