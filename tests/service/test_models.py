"""Resolving model references through the real MLflow server, and the per-process cache."""

import secrets

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from contract import provenance
from service.app import create_app
from service.problems import Problem


@pytest.fixture
def cache(settings):
    return create_app(settings).extensions["echo"].models


def test_every_kind_of_reference_resolves_to_the_same_version(cache, stack, trained_job):
    version = trained_job["model"]["version"]
    client = MlflowClient(tracking_uri=stack.mlflow)
    client.set_registered_model_alias("echo-rnn", "champion", version)
    refs = [
        trained_job["id"],
        trained_job["mlflow"]["run_id"],
        f"models:/echo-rnn/{version}",
        "models:/echo-rnn@champion",
    ]
    for ref in refs:
        info = cache.resolver.resolve(ref)
        assert (info.version, info.job_id, info.run_id) == (version, trained_job["id"], trained_job["mlflow"]["run_id"])
    assert cache.resolver.resolve(None).version == version  # no model= : the champion


def test_a_model_is_loaded_once_and_kept(cache, trained_job):
    info, model = cache.get(trained_job["id"])
    assert cache.loads == 1 and cache.hits == 0
    _again_info, again = cache.get(info.uri)
    assert again is model and cache.loads == 1 and cache.hits == 1
    bits = np.random.default_rng(1).integers(0, 2, (3, 50)).astype(np.int32)
    p = model.predict(bits)
    assert p.shape == (3, 50) and ((p > 0.5)[:, 3:] == bits[:, :-3]).mean() > 0.99


def test_the_cache_is_bounded(cache, stack, trained_job):
    versions = copies(stack, cache, trained_job, 3)  # the same files registered three more times: three to load
    for v in versions:
        cache.get(f"models:/echo-rnn/{v}")
    assert cache.loads == 3 and len(cache._loaded) == cache.size == 2


def test_an_alias_is_re_resolved_after_its_ttl(cache, stack, trained_job):
    client = MlflowClient(tracking_uri=stack.mlflow)
    versions = sorted(int(v.version) for v in client.search_model_versions("name = 'echo-rnn'"))
    client.set_registered_model_alias("echo-rnn", "moving", str(versions[0]))
    assert cache.resolver.resolve("models:/echo-rnn@moving").version == str(versions[0])
    client.set_registered_model_alias("echo-rnn", "moving", str(versions[-1]))
    import time

    time.sleep(cache.resolver.ttl_s + 0.1)
    assert cache.resolver.resolve("models:/echo-rnn@moving").version == str(versions[-1])


def test_a_job_without_model_is_404(cache, redis_client, settings):
    from contract.job_store import JobStore

    job = JobStore(redis_client, settings.job_key_prefix).create({"num_epochs": 1}, steps=10)
    with pytest.raises(Problem) as caught:
        cache.resolver.resolve(job.id)
    assert caught.value.status == 404


@pytest.fixture(scope="module")
def model_dir(stack, trained_job) -> str:
    """The trained job's model, downloaded from MLflow as the API downloads it."""
    import mlflow.artifacts

    client = MlflowClient(tracking_uri=stack.mlflow)
    location = client.get_model_version_download_uri("echo-rnn", trained_job["model"]["version"])
    return mlflow.artifacts.download_artifacts(artifact_uri=location, tracking_uri=stack.mlflow)


@pytest.mark.parametrize(
    "rows, length", [(1, 1), (1, 100), (3, 17), (40, 300), (48, 33), (1000, 100), (1, 5000), (2, 100_000)]
)
def test_the_served_graph_answers_as_mlflow_pyfunc_does(model_dir, rows, length):
    """The API's ONNX graph (batched, no padding; NumPy from 48 rows) gives what MLflow's own predict of the SavedModel gives."""
    from pathlib import Path

    import mlflow.pyfunc

    from contract import provenance
    from service.serving import LoadedModel

    bits = np.random.default_rng(rows * length).integers(0, 2, (rows, length)).astype(np.int32)
    want = mlflow.pyfunc.load_model(model_dir).predict(bits)
    got = LoadedModel((Path(model_dir) / provenance.SERVING_FILE).read_bytes()).predict(bits)
    assert got.shape == want.shape == (rows, length)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def copies(stack, cache, trained_job, count: int) -> list[str]:
    """Versions registered from the trained job's files, each served (their records copied): versions to load."""
    client = MlflowClient(tracking_uri=stack.mlflow)
    source = client.get_model_version("echo-rnn", trained_job["model"]["version"])
    files = str(source.source)
    record = provenance.lookup(cache.redis, cache.prefix, "echo-rnn", source.version)
    assert record is not None
    made = []
    for _ in range(count):
        copy = client.create_model_version("echo-rnn", files, run_id=source.run_id, model_id=files.rsplit("/", 1)[-1])
        provenance.copy(cache.redis, cache.prefix, record, copy.version)
        made.append(copy.version)
    return made


def test_versions_others_name_never_evict_the_champion(cache, stack, trained_job):
    MlflowClient(tracking_uri=stack.mlflow).set_registered_model_alias(
        "echo-rnn", "champion", trained_job["model"]["version"]
    )
    champion, _ = cache.get(None)
    for version in copies(stack, cache, trained_job, 3):
        cache.get(f"models:/echo-rnn/{version}")
        assert cache.is_loaded(champion)
    assert len(cache._loaded) == cache.size == 2


def test_a_client_causes_a_bounded_number_of_loads(settings, stack, trained_job, redis_client):
    app = create_app(settings.model_copy(update={"model_loads_per_client": "2/minute"}))
    MlflowClient(tracking_uri=stack.mlflow).set_registered_model_alias(
        "echo-rnn", "champion", trained_job["model"]["version"]
    )
    versions = copies(stack, app.extensions["echo"].models, trained_job, 3)
    client = app.test_client()
    one, another = ({"REMOTE_ADDR": f"10.{n}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"} for n in (1, 2))
    client.environ_base.update(one)  # a client of its own: counts of earlier runs cannot meet it
    asked = [
        client.get("/predict", query_string={"sequence": "0110", "model": f"models:/echo-rnn/{v}"}) for v in versions
    ]
    assert [r.status_code for r in asked] == [200, 200, 429], [r.get_json() for r in asked]
    refused = asked[2].get_json()
    assert "MODEL_LOADS_PER_CLIENT" in refused["detail"] and int(asked[2].headers["Retry-After"]) >= 1, refused
    # Versions this process holds, and the champion (loaded for anyone), still answer, and count nothing.
    for version in versions[:2]:
        assert (
            client.get("/predict", query_string={"sequence": "01", "model": f"models:/echo-rnn/{version}"}).status_code
            == 200
        )
    assert client.get("/predict", query_string={"sequence": "0110"}).status_code == 200
    # Another client has a budget of its own.
    other = client.get(
        "/predict", query_string={"sequence": "0110", "model": f"models:/echo-rnn/{versions[2]}"}, environ_base=another
    )
    assert other.status_code == 200, other.get_json()
