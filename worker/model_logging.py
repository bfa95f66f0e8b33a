"""Logging the trained network as an MLflow TensorFlow model and registering a version."""

import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import mlflow.tensorflow
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model, ModelSignature
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Schema, TensorSpec

from contract import provenance
from worker import champion
from worker.engine.export import EchoModel, build
from worker.engine.train import TrainingResult
from worker.retry import Outage
from worker.mlflow_retry import mlflow_outage

log = logging.getLogger(__name__)
UPLOADS_AT_ONCE = 4
_registered_names: set[tuple[str, str]] = set()  # (tracking URI, name) this process knows to exist

SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.int32), (-1, -1))]),  # unnamed: pyfunc passes a plain array
    outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1), "p_one")]),
)


def log_and_register(
    client: MlflowClient, run_id: str, job_id: str, result: TrainingResult, name: str, outage: Outage | None = None,
    module: EchoModel | None = None, fresh: bool = False, experiment_id: str | None = None,
) -> dict:
    """Log the model into the run, register it under name; returns uri, name, version (and digest, when logged here).

    Each MLflow step is retried through outage (the job's RunLogger.outage) while MLflow is
    unreachable; without one, a step gets a single try. Registering is idempotent: a run that
    already has a version of name (a retry after a lost answer, a resumed job) keeps that one;
    fresh (a job's first attempt: no version can exist yet) skips looking for it first.
    A module from export.traced(params) skips tracing; without one, the module is built here.
    The version carries the held-out scores as tags (what the champion gate compares).
    """
    outage = outage or mlflow_outage(client.tracking_uri, 0)
    existing = None if fresh else outage.call(lambda: _version_of_run(client, name, run_id), "logging the model")
    if existing is None:
        logged = log_model(client, run_id, job_id, result, outage, module, experiment_id)
        scores = result.evaluation
        tags = champion.score_tags(scores.echo_accuracy, scores.loss) if scores else {}
        registered = register(client, run_id, job_id, logged, name, outage, tags, fresh)
        return {**registered, "digest": logged["digest"]}
    return {"uri": f"models:/{name}/{existing.version}", "name": name, "version": str(existing.version)}


def log_model(client: MlflowClient, run_id: str, job_id: str, result: TrainingResult, outage: Outage,
              module: EchoModel | None = None, experiment_id: str | None = None) -> dict:
    """Log the trained network into the run as an MLflow TensorFlow model; returns its model_uri, model_id and digest.

    What Model.log does, in fewer round trips: the model, with the job's parameters, is filed
    under the run's experiment (Model.log uses the active one: Default, where the service account
    may not write), its files go up side by side, and the run's metrics are not copied onto it
    (Model.log reads every metric's whole history to copy those of step 0).
    """
    module = module.set_weights(result.weights) if module is not None else build(result.weights, result.params.echo_step)
    if experiment_id is None:
        experiment_id = outage.call(lambda: client.get_run(run_id).info.experiment_id, "reading the run")
    params = {k: str(v) for k, v in result.params.model_dump().items()}  # as Model.log copies the run's
    model = outage.call(lambda: client.create_logged_model(experiment_id, name="model", source_run_id=run_id,
                                                           tags={"job_id": job_id}, params=params), "logging the model")
    try:
        digest = _write(client, model, run_id, module, outage)
    except BaseException:
        try:  # as Model.log leaves a model it could not finish: FAILED, not PENDING for ever
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        except Exception:
            log.warning("could not mark the logged model %s failed", model.model_id, exc_info=True)
        raise
    outage.call(lambda: client.finalize_logged_model(model.model_id, LoggedModelStatus.READY), "finalizing the model")
    return {"model_uri": f"models:/{model.model_id}", "model_id": model.model_id, "digest": digest}


def _write(client: MlflowClient, model, run_id: str, module: EchoModel, outage: Outage) -> str:
    """Save the model's files, upload them and link the model to the run; returns the files' digest."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model")
        mlflow.tensorflow.save_model(
            module, path,
            mlflow_model=Model(artifact_path=model.artifact_location, model_uuid=model.model_id, run_id=run_id,
                               model_id=model.model_id),
            # No input example: MLflow would load and run the model to check it; the signature says what it takes.
            signature=SIGNATURE,
            # Explicit requirements: inferring them costs seconds for this tiny model.
            pip_requirements=[f"tensorflow=={tf.__version__}", f"mlflow=={mlflow.__version__}"],
        )
        # The digest of the files as written: they go up as they are, so the API's check needs no download back.
        digest = provenance.digest(path)
        outage.call(lambda: _upload(client, model.artifact_location, path), "uploading the model")
    outage.call(lambda: client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)]), "linking the model")
    return digest


def _upload(client: MlflowClient, location: str, path: str) -> None:
    """Upload a directory's files to an artifact location, a few at once (MLflow sends them one after another)."""
    repo = get_artifact_repository(location, tracking_uri=client.tracking_uri)
    root = Path(path)
    files = [f for f in root.rglob("*") if f.is_file()]
    with ThreadPoolExecutor(UPLOADS_AT_ONCE, thread_name_prefix="model-upload") as pool:
        uploads = [pool.submit(repo.log_artifact, str(f), None if f.parent == root else f.parent.relative_to(root).as_posix())
                   for f in files]
        for upload in uploads:
            upload.result()


def register(client: MlflowClient, run_id: str, job_id: str, logged: dict, name: str, outage: Outage,
             tags: dict[str, str] | None = None, fresh: bool = False) -> dict:
    """Register a model logged by log_model as a version of name (the run's version if it has one already)."""
    if (client.tracking_uri, name) not in _registered_names:
        outage.call(lambda: _ensure_registered_model(client, name), "registering the model")
        _registered_names.add((client.tracking_uri, name))
    tried = []

    def create_version():
        # A retry, or a run that may have a version already, first looks for it (a lost answer may have created it).
        found = _version_of_run(client, name, run_id) if tried or not fresh else None
        tried.append(True)
        if found:
            return found

        def create():
            return client.create_model_version(name, source=logged["model_uri"], run_id=run_id, model_id=logged["model_id"],
                                               tags={"job_id": job_id, **(tags or {})}, await_creation_for=0)
        try:
            return create()
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            _ensure_registered_model(client, name)  # deleted since this process saw it
            return create()

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
