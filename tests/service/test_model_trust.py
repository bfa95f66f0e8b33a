"""Hostile models registered in the real MLflow server: the API refuses each, and none of their code runs."""

import contextlib
import os
import shutil
from pathlib import Path

import mlflow
import pytest
import requests
import yaml
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient

from contract import provenance
from service import model_trust
from service.model_versions import ModelInfo
from service.problems import Problem


class Payload:
    """Unpickling it writes a file: what a hostile pickle would do, harmlessly."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('code ran')",))


class HostilePythonModel(PythonModel):
    """A pyfunc model whose unpickling writes the file."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('code ran')",))

    def predict(self, context, model_input):
        return model_input


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "hostile-code-ran"


@pytest.fixture
def legit_dir(stack, trained_job, tmp_path) -> Path:
    """The trained job's model directory, as the API downloads it."""
    client = MlflowClient(tracking_uri=stack.mlflow)
    location = client.get_model_version_download_uri("echo-rnn", trained_job["model"]["version"])
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(tmp_path / "legit"), tracking_uri=stack.mlflow
        )
    )


def keras_flavoured(legit: Path, into: Path, marker: Path, pickled: bool) -> Path:
    """Our model's files with an MLmodel that has MLflow import a module of its code/ dir, or unpickle custom objects."""
    shutil.copytree(legit, into)
    meta = yaml.safe_load((into / "MLmodel").read_text())
    meta["flavors"]["tensorflow"].update(model_type="keras", keras_module="evil_keras", code="code")
    (into / "MLmodel").write_text(yaml.safe_dump(meta))
    (into / "code").mkdir()
    (into / "code" / "evil_keras.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\n")
    if pickled:
        import cloudpickle

        (into / "custom_objects.cloudpickle").write_bytes(cloudpickle.dumps({"evil": Payload(str(marker))}))
    return into


def register(client: MlflowClient, run_id: str, local: Path, job_id: str) -> str:
    """Log a model directory into a run and register it as a version of echo-rnn, tagged as a job's."""
    client.log_artifacts(run_id, str(local), local.name)
    source = f"{client.get_run(run_id).info.artifact_uri}/{local.name}"
    return client.create_model_version("echo-rnn", source, run_id=run_id, tags={"job_id": job_id}).version


def ask(stack, version: str) -> requests.Response:
    return requests.get(
        f"{stack.api}/predict", params={"sequence": "0110", "model": f"models:/echo-rnn/{version}"}, timeout=60
    )


def test_hostile_versions_are_refused_and_never_run(stack, trained_job, legit_dir, marker, tmp_path):
    client = MlflowClient(tracking_uri=stack.mlflow)
    run = client.create_run(trained_job["mlflow"]["experiment_id"], tags={"job_id": trained_job["id"]})
    mlflow.set_tracking_uri(stack.mlflow)
    with mlflow.start_run(run_id=run.info.run_id):
        pyfunc = mlflow.pyfunc.log_model(name="evil", python_model=HostilePythonModel(str(marker)))
    hostile = {
        "a pyfunc python_model": client.create_model_version(
            "echo-rnn",
            pyfunc.model_uri,
            run_id=run.info.run_id,
            tags={"job_id": trained_job["id"]},
            model_id=pyfunc.model_id,
        ).version,
        "a Keras module in code/": register(
            client,
            run.info.run_id,
            keras_flavoured(legit_dir, tmp_path / "keras_code", marker, False),
            trained_job["id"],
        ),
        "a pickled custom object": register(
            client,
            run.info.run_id,
            keras_flavoured(legit_dir, tmp_path / "keras_pickle", marker, True),
            trained_job["id"],
        ),
    }
    # The job's own run with a version of foreign files: its tag and run are right, its files are not ours.
    hostile["foreign files in our run"] = register(
        client,
        trained_job["mlflow"]["run_id"],
        keras_flavoured(legit_dir, tmp_path / "ours", marker, True),
        trained_job["id"],
    )
    marker.unlink(missing_ok=True)  # MLflow's own logging ran the pickle in this process (inferring requirements)
    for what, version in hostile.items():
        resp = ask(stack, version)
        assert resp.status_code == 403, (what, resp.status_code, resp.text)
        body = resp.json()
        assert resp.headers["Content-Type"] == "application/problem+json" and "not served" in body["detail"], (
            what,
            body,
        )
        assert "not produced by a job of this service" in body["detail"], (what, body)
    assert not marker.exists(), "a hostile model's code ran inside the API"
    assert ask(stack, trained_job["model"]["version"]).status_code == 200, "our own model still serves"
    by_run = requests.get(
        f"{stack.api}/predict", params={"sequence": "0110", "model": trained_job["mlflow"]["run_id"]}, timeout=60
    )
    assert by_run.status_code == 200 and by_run.json()["model"]["version"] == trained_job["model"]["version"], (
        by_run.text
    )


def test_another_registered_model_is_refused(stack, trained_job):
    client = MlflowClient(tracking_uri=stack.mlflow)
    version = client.get_model_version("echo-rnn", trained_job["model"]["version"])
    with contextlib.suppress(mlflow.exceptions.MlflowException):
        client.create_registered_model("someone-elses")
    other = client.create_model_version(
        "someone-elses", version.source, run_id=version.run_id, model_id=version.source.rsplit("/", 1)[-1]
    )
    resp = requests.get(
        f"{stack.api}/predict",
        params={"sequence": "0110", "model": f"models:/someone-elses/{other.version}"},
        timeout=60,
    )
    assert resp.status_code == 403 and "only versions of the registered model 'echo-rnn'" in resp.json()["detail"], (
        resp.text
    )


INFO = ModelInfo("echo-rnn", "7", "models:/echo-rnn/7", "r" * 32, "job")


def test_the_recorded_graph_is_accepted_and_a_changed_or_oversized_one_refused(legit_dir):
    graph = (legit_dir / provenance.SERVING_FILE).read_bytes()
    record = provenance.Provenance(
        "echo-rnn", "7", "job", "r" * 32, provenance.digest(legit_dir), provenance.file_digest(graph)
    )
    model_trust.check_graph(INFO, graph, record)  # as registered: accepted
    changed = bytearray(graph)
    changed[-1] ^= 0xFF
    for bad, reason in (
        (bytes(changed), "changed since the service registered it"),
        (graph + b"\0" * provenance.SERVING_MAX_BYTES, "ONNX graph is over"),
    ):
        with pytest.raises(Problem) as refused:
            model_trust.check_graph(INFO, bad, record)
        assert refused.value.status == 403 and reason in refused.value.detail


def test_a_version_recorded_before_onnx_serving_is_refused_naming_the_backfill(legit_dir):
    record = provenance.Provenance("echo-rnn", "7", "job", "r" * 32, provenance.digest(legit_dir))
    with pytest.raises(Problem) as refused:
        model_trust.check_origin(INFO, "echo-rnn", record)
    assert refused.value.status == 403 and "echo-rnn models backfill" in refused.value.detail


def test_the_api_never_unpickles_through_mlflow(settings):
    env = settings.mlflow_client_environment()
    assert env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    from service.app import create_app

    create_app(settings)
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
