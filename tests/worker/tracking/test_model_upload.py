"""log_model and register on the real MLflow server: the model logged into the job's run, a version of it, and it echoes."""

import uuid

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from contract import provenance
from worker.tracking.mlflow_retry import MlflowUnavailable, mlflow_outage
from worker.tracking.model_upload import log_model
from worker.tracking.publish import Candidate, register
from worker.tracking.registry import Registry


def log_and_register(client, run_id, job_id, result, name, outage=None, module=None) -> dict:
    """What a job's attempt does before it records the version: log the model, register a version of it."""
    outage = outage or mlflow_outage(client.tracking_uri, 0)
    logged = log_model(client, run_id, job_id, result, outage, module)
    # No Redis: registering takes no champion lock (only the gate's promotion does).
    registry = Registry(client, outage, None, "", name, "champion", 0.99)  # type: ignore[arg-type]
    scores = result.evaluation
    return {
        **register(registry, Candidate(job_id, run_id, logged, scores.echo_accuracy, scores.loss)),
        "digest": logged["digest"],
    }


def files_digest(client: MlflowClient, name: str, version: str) -> str:
    """The digest of a version's files as the artifact store holds them (what the API checks)."""
    import tempfile

    found = client.get_model_version(name, version)  # located as the API locates it (service/model_download.py)
    location = (
        client.get_logged_model(found.model_id).artifact_location
        if found.model_id
        else client.get_model_version_download_uri(name, version)
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=tmp, tracking_uri=client.tracking_uri
        )
        return provenance.digest(path)


@pytest.fixture
def name() -> str:
    """A registered model of the test's own (the service's echo-rnn is left alone)."""
    return f"worker-test-{uuid.uuid4().hex[:8]}"


def test_the_model_is_logged_into_the_run_and_registered_with_the_job_id(client, run_id, name, echoing):
    job_id = str(uuid.uuid4())
    model = log_and_register(client, run_id, job_id, echoing, name, mlflow_outage(client.tracking_uri, 10))
    digest = model.pop("digest")
    assert model == {"uri": f"models:/{name}/1", "name": name, "version": "1"}
    assert digest == files_digest(client, name, "1"), (
        "the digest of the files written is the digest of the files the store holds"
    )
    version = client.get_model_version(name, "1")
    assert version.run_id == run_id and version.tags["job_id"] == job_id
    experiment_id = client.get_run(run_id).info.experiment_id
    [logged] = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert logged.experiment_id == experiment_id != "0"  # the run's experiment, not Default
    assert version.source == logged.model_uri and logged.name == "model" and logged.tags["job_id"] == job_id
    assert str(logged.status) == "READY" and logged.params["state_size"] == str(echoing.params.state_size)
    assert [o.model_id for o in client.get_run(run_id).outputs.model_outputs] == [logged.model_id]  # the run lists it
    scores = echoing.evaluation
    assert (version.tags["eval_echo_accuracy"], version.tags["eval_loss"]) == (
        f"{scores.echo_accuracy:.6f}",
        f"{scores.loss:.6f}",
    ), "registered with its held-out scores"


def test_registering_the_same_run_again_is_a_new_version_never_the_old_one_found(client, run_id, name, echoing):
    job_id = str(uuid.uuid4())
    first = log_and_register(client, run_id, job_id, echoing, name)
    again = log_and_register(client, run_id, job_id, echoing, name)
    assert (first["version"], again["version"]) == ("1", "2"), "only a record says which version is the job's"


def test_another_run_adds_a_version(client, run_id, name, echoing):
    first = log_and_register(client, run_id, str(uuid.uuid4()), echoing, name)
    other_run = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    second = log_and_register(client, other_run, str(uuid.uuid4()), echoing, name)
    assert (first["version"], second["version"]) == ("1", "2")
    assert client.get_model_version(name, "2").run_id == other_run


@pytest.mark.usefixtures("global_tracking_uri")
def test_the_registered_model_loads_with_pyfunc_and_echoes(client, run_id, name, echoing):
    model = log_and_register(client, run_id, str(uuid.uuid4()), echoing, name)
    loaded = mlflow.pyfunc.load_model(model["uri"])
    x = np.random.default_rng(7).integers(0, 2, (4, 40), dtype=np.int32)
    p_one = np.asarray(loaded.predict(x))
    assert p_one.shape == (4, 40) and ((p_one >= 0) & (p_one <= 1)).all()
    echo = echoing.params.echo_step
    assert ((p_one[:, echo:] > 0.5) == x[:, :-echo]).mean() >= 0.99


@pytest.mark.usefixtures("global_tracking_uri")
def test_a_module_traced_ahead_is_given_the_trained_weights(client, run_id, name, echoing):
    from worker.engine import export

    module = export.traced(echoing.params)  # untrained weights until log_and_register sets them
    model = log_and_register(client, run_id, str(uuid.uuid4()), echoing, name, module=module)
    for variable, key in zip(module.weights, ("W", "b", "W2", "b2")):
        np.testing.assert_array_equal(variable.numpy(), echoing.weights[key])
    x = np.random.default_rng(8).integers(0, 2, (2, 30), dtype=np.int32)
    p_one = np.asarray(mlflow.pyfunc.load_model(model["uri"]).predict(x))
    echo = echoing.params.echo_step
    assert ((p_one[:, echo:] > 0.5) == x[:, :-echo]).mean() >= 0.99


def test_an_unreachable_server_fails_with_mlflow_unavailable_past_the_limit(
    fail_fast_mlflow, closed_port, echoing, name
):
    uri = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(MlflowUnavailable, match=rf"^MLflow at {uri} unreachable .* while reading the run"):
        log_and_register(MlflowClient(tracking_uri=uri), "0" * 32, "job", echoing, name, mlflow_outage(uri, 0.3))


def test_without_an_outage_each_step_gets_a_single_try(fail_fast_mlflow, closed_port, echoing, name):
    uri = f"http://127.0.0.1:{closed_port}"
    with pytest.raises(MlflowUnavailable, match=r"\(limit 0 s\) while reading the run"):
        log_and_register(MlflowClient(tracking_uri=uri), "0" * 32, "job", echoing, name)


def test_a_model_that_cannot_be_written_is_marked_failed_not_left_pending(client, run_id, name, echoing):
    class Unsavable:
        def set_weights(self, weights):
            return object()  # not a TensorFlow module: MLflow refuses to save it

    with pytest.raises(mlflow.exceptions.MlflowException, match="Unknown model type"):
        log_and_register(client, run_id, str(uuid.uuid4()), echoing, name, module=Unsavable())
    experiment_id = client.get_run(run_id).info.experiment_id
    [logged] = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert str(logged.status) == "FAILED"
    assert client.search_model_versions(f"run_id = '{run_id}'") == []
