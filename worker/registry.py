"""Logging the trained network as an MLflow TensorFlow model and registering a version."""

import numpy as np
import mlflow.tensorflow
from mlflow.models import Model, ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Schema, TensorSpec

from worker.engine.export import build
from worker.engine.train import TrainingResult

SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.int32), (-1, -1))]),  # unnamed: pyfunc passes a plain array
    outputs=Schema(
        [
            TensorSpec(np.dtype(np.float32), (-1, -1), "p_one"),
            TensorSpec(np.dtype(np.float32), (-1, -1, -1), "probabilities"),
        ]
    ),
)


def log_and_register(client: MlflowClient, run_id: str, job_id: str, result: TrainingResult, name: str) -> dict:
    """Log the model into the run, register it under name; returns uri, name and version."""
    import tensorflow as tf

    module = build(result.weights, result.params.echo_step)
    example = np.array([[0, 1, 1, 0, 1, 0, 0, 1]], dtype=np.int32)
    # MLflow's model logging goes through the global tracking URI; point it at this run's server.
    mlflow.set_tracking_uri(client.tracking_uri)
    info = Model.log(
        artifact_path=None,
        name="model",
        flavor=mlflow.tensorflow,
        run_id=run_id,
        model=module,
        signature=SIGNATURE,
        input_example=example,
        # Explicit requirements: inferring them costs seconds for this tiny model.
        pip_requirements=[f"tensorflow=={tf.__version__}", f"mlflow=={mlflow.__version__}"],
        tags={"job_id": job_id},
    )
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass  # already registered
    version = client.create_model_version(
        name, source=info.model_uri, run_id=run_id, tags={"job_id": job_id}, model_id=info.model_id
    )
    return {"uri": f"models:/{name}/{version.version}", "name": name, "version": str(version.version)}
