"""publish on the real MLflow server and Redis: a version is the job's only once recorded, never found by a search."""

import uuid

import pytest

from contract import provenance
from contract.provenance import Provenance
from tests.worker.tracking.test_model_upload import files_digest
from worker.tracking.mlflow_retry import mlflow_outage
from worker.tracking.model_upload import log_model
from worker.tracking.publish import IGNORED_TAG, Candidate, publish
from worker.tracking.registry import Registry


@pytest.fixture
def registry(client, redis_client) -> Registry:
    name = f"publish-test-{uuid.uuid4().hex[:8]}"
    return Registry(
        client, mlflow_outage(client.tracking_uri, 10), redis_client, f"test:{name}:lock", name, "champion", 0.5
    )


def candidate(client, run_id, echoing, outage) -> Candidate:
    job_id = str(uuid.uuid4())
    logged = log_model(client, run_id, job_id, echoing, outage)
    return Candidate(job_id, run_id, logged, echoing.evaluation.echo_accuracy, echoing.evaluation.loss)


def test_a_version_is_recorded_with_the_written_files_digest_before_the_gate(client, run_id, echoing, registry):
    made = candidate(client, run_id, echoing, registry.outage)
    recorded: list[tuple[dict, Provenance]] = []

    def record(model: dict, prov: Provenance) -> None:
        assert client.get_registered_model(registry.name).aliases == {}, "recorded before the gate may promote it"
        recorded.append((model, prov))

    model = publish(registry, made, record, resumed=False)
    [(version, prov)] = recorded
    assert version == {k: model[k] for k in ("uri", "name", "version")} and model["promoted"] is True
    assert prov == Provenance(
        registry.name,
        model["version"],
        made.job_id,
        run_id,
        made.logged["digest"],
        made.logged["serving_digest"],
        made.logged["serving_uri"],
    )
    assert prov.digest == files_digest(client, registry.name, model["version"])
    assert prov.serving_uri.endswith(f"/{provenance.SERVING_FILE}")


def test_a_resume_takes_the_recorded_version_and_registers_nothing(client, run_id, echoing, registry):
    made = candidate(client, run_id, echoing, registry.outage)
    first = publish(registry, made, lambda m, p: None, resumed=False)
    again = publish(registry, made, lambda m, p: pytest.fail("nothing new to record"), recorded=first)
    assert again == first and len(client.search_model_versions(f"name = '{registry.name}'")) == 1


def test_a_version_planted_under_the_run_is_ignored_and_a_resume_registers_its_own(client, run_id, echoing, registry):
    made = candidate(client, run_id, echoing, registry.outage)
    client.create_registered_model(registry.name)
    planted = client.create_model_version(
        registry.name,
        source=made.logged["model_uri"],
        run_id=run_id,
        model_id=made.logged["model_id"],
        tags={"job_id": made.job_id},
    )
    recorded: list[dict] = []
    model = publish(registry, made, lambda m, p: recorded.append(m))
    assert model["version"] != planted.version and recorded[0]["version"] == model["version"]
    assert client.get_model_version(registry.name, planted.version).tags[IGNORED_TAG]
