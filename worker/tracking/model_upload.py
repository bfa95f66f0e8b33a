"""Logging a trained network into its run as an MLflow TensorFlow model (with its ONNX graph beside the
SavedModel, what the API serves), and the digests of the files written."""

import logging
import tempfile
from pathlib import Path

import mlflow.tensorflow
import numpy as np
from mlflow.entities import LoggedModel, LoggedModelOutput, LoggedModelStatus
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Schema, TensorSpec

from contract import provenance
from contract.mlflow_names import JOB_ID_TAG
from worker.engine import onnx_graph
from worker.engine.export import EchoModel, build
from worker.engine.results import TrainingResult
from worker.retry import Outage
from worker.tracking import artifacts

log = logging.getLogger(__name__)

SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.int32), (-1, -1))]),  # unnamed: pyfunc passes a plain array
    outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1), "p_one")]),
)


def log_model(
    client: MlflowClient,
    run_id: str,
    job_id: str,
    result: TrainingResult,
    outage: Outage,
    module: EchoModel | None = None,
    experiment_id: str | None = None,
) -> dict:
    """Log the trained network into the run as an MLflow TensorFlow model; returns its model_uri, model_id, digest
    (of the SavedModel's files), serving_digest (of the ONNX file) and serving_uri (where the ONNX file is).

    What Model.log does, in fewer round trips: the model, with the job's parameters, is filed
    under the run's experiment (Model.log uses the active one: Default, where the service account
    may not write), its files go up side by side, and the run's metrics are not copied onto it
    (Model.log reads every metric's whole history to copy those of step 0).
    """
    module = (
        module.set_weights(result.weights) if module is not None else build(result.weights, result.params.echo_step)
    )
    if experiment_id is None:
        experiment_id = outage.call(lambda: client.get_run(run_id).info.experiment_id, "reading the run")
    params = {k: str(v) for k, v in result.params.model_dump().items()}  # as Model.log copies the run's
    model = outage.call(
        lambda: client.create_logged_model(
            experiment_id, name="model", source_run_id=run_id, tags={JOB_ID_TAG: job_id}, params=params
        ),
        "logging the model",
    )
    try:
        digests = _write(client, model, run_id, module, result, outage)
    except BaseException:
        try:  # as Model.log leaves a model it could not finish: FAILED, not PENDING for ever
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        except Exception:
            log.warning("could not mark the logged model %s failed", model.model_id, exc_info=True)
        raise
    outage.call(lambda: client.finalize_logged_model(model.model_id, LoggedModelStatus.READY), "finalizing the model")
    return {"model_uri": f"models:/{model.model_id}", "model_id": model.model_id, **digests}


def _write(
    client: MlflowClient, model: LoggedModel, run_id: str, module: EchoModel, result: TrainingResult, outage: Outage
) -> dict[str, str]:
    """Save the model's files, upload them and link the model to the run; returns the files' digests and the graph's URI."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model")
        mlflow.tensorflow.save_model(
            module,
            path,
            mlflow_model=Model(
                artifact_path=model.artifact_location, model_uuid=model.model_id, run_id=run_id, model_id=model.model_id
            ),
            # No input example: MLflow would load and run the model to check it; the signature says what it takes.
            signature=SIGNATURE,
            # Explicit requirements: inferring them costs seconds for this tiny model.
            pip_requirements=[f"tensorflow=={tf.__version__}", f"mlflow=={mlflow.__version__}"],
        )
        serving = onnx_graph.build(result.weights, result.params.echo_step)
        (Path(path) / provenance.SERVING_FILE).write_bytes(serving)
        # The digests of the files as written: they go up as they are, so the API's check needs no download back.
        digests = {
            "digest": provenance.digest(path),
            "serving_digest": provenance.file_digest(serving),
            "serving_uri": provenance.serving_uri(model.artifact_location),
        }
        outage.call(
            lambda: artifacts.upload(model.artifact_location, client.tracking_uri, Path(path)), "uploading the model"
        )
    outage.call(lambda: client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)]), "linking the model")
    return digests
