"""Resolving model references through the real MLflow server, and the per-process cache."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from service.app import create_app
from service.problems import Problem


@pytest.fixture
def registry(settings):
    return create_app(settings).extensions["echo"].models


def test_every_kind_of_reference_resolves_to_the_same_version(registry, stack, trained_job):
    version = trained_job["model"]["version"]
    client = MlflowClient(tracking_uri=stack.mlflow)
    client.set_registered_model_alias("echo-rnn", "champion", version)
    refs = [trained_job["id"], trained_job["mlflow"]["run_id"], f"models:/echo-rnn/{version}", "models:/echo-rnn@champion"]
    for ref in refs:
        info = registry.resolve(ref)
        assert (info.version, info.job_id, info.run_id) == (version, trained_job["id"], trained_job["mlflow"]["run_id"])
    newest = max(int(v.version) for v in client.search_model_versions("name = 'echo-rnn'"))
    assert registry.resolve(None).version == str(newest)


def test_a_model_is_loaded_once_and_kept(registry, trained_job):
    info, model = registry.get(trained_job["id"])
    assert registry.loads == 1 and registry.hits == 0
    again_info, again = registry.get(info.uri)
    assert again is model and registry.loads == 1 and registry.hits == 1
    bits = np.random.default_rng(1).integers(0, 2, (3, 50)).astype(np.int32)
    p = model.predict(bits)
    assert p.shape == (3, 50) and ((p > 0.5) [:, 3:] == bits[:, :-3]).mean() > 0.99


def test_the_cache_is_bounded(registry, stack, trained_job):
    client = MlflowClient(tracking_uri=stack.mlflow)
    versions = sorted(int(v.version) for v in client.search_model_versions("name = 'echo-rnn'"))
    if len(versions) < 3:  # register the same model twice more, so there are three versions to load
        source = client.get_model_version("echo-rnn", trained_job["model"]["version"])
        for _ in range(3 - len(versions)):
            client.create_model_version("echo-rnn", source.source, run_id=source.run_id, model_id=source.source.rsplit("/", 1)[-1])
        versions = sorted(int(v.version) for v in client.search_model_versions("name = 'echo-rnn'"))
    for v in versions[-3:]:
        registry.get(f"models:/echo-rnn/{v}")
    assert registry.loads == 3 and len(registry._loaded) == registry.size == 2


def test_an_alias_is_re_resolved_after_its_ttl(registry, stack, trained_job):
    client = MlflowClient(tracking_uri=stack.mlflow)
    versions = sorted(int(v.version) for v in client.search_model_versions("name = 'echo-rnn'"))
    client.set_registered_model_alias("echo-rnn", "moving", str(versions[0]))
    assert registry.resolve("models:/echo-rnn@moving").version == str(versions[0])
    client.set_registered_model_alias("echo-rnn", "moving", str(versions[-1]))
    import time
    time.sleep(registry.ttl_s + 0.1)
    assert registry.resolve("models:/echo-rnn@moving").version == str(versions[-1])


def test_a_job_without_model_is_404(registry, redis_client, settings):
    from worker.jobs import JobStore
    job = JobStore(redis_client, settings.job_key_prefix).create({"num_epochs": 1}, steps=10)
    with pytest.raises(Problem) as caught:
        registry.resolve(job.id)
    assert caught.value.status == 404
