"""Publishing a trained model, the one rule for jobs and sweeps: register → record → champion gate.

A version is this service's only if the attempt that registered it records it, with the digest of
the files it wrote, in one fenced step (record): the API serves nothing else. A resumed attempt
takes the version its job's record names, never one found by searching MLflow; versions of the
run that no record names are logged and tagged as ignored, never adopted or served.
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from contract import provenance
from contract.mlflow_names import JOB_ID_TAG
from contract.provenance import Provenance
from worker.tracking import champion
from worker.tracking.registry import Registry

log = logging.getLogger(__name__)
REGISTRATION_TAG = "registration"  # a version's tag: the nonce of the call that created it
IGNORED_TAG = "ignored"  # set on a version of a job's run that this service did not record
_registered_names: set[tuple[str, str]] = set()  # (tracking URI, name) this process knows to exist


@dataclass(frozen=True)
class Candidate:
    """A trained model logged into its run, with its held-out scores."""

    job_id: str
    run_id: str
    logged: dict  # model_uri, model_id, digest (of the files as written)
    echo_accuracy: float
    loss: float


def publish(
    registry: Registry,
    candidate: Candidate,
    record: Callable[[dict, Provenance], None],
    recorded: dict | None = None,
    resumed: bool = True,
) -> dict:
    """The model as its job shows it (uri, name, version, promoted, promotion).

    recorded: the version an earlier attempt registered and recorded (a resume): only gated again.
    Otherwise a new version is registered, recorded by record(model, provenance) (a fenced step
    that raises when this attempt lost its lease), and only then put through the gate. resumed:
    an earlier attempt may have left versions of the run (a job's first attempt skips that search).
    """
    if recorded is not None:
        model = {k: recorded[k] for k in ("uri", "name", "version")}
        fresh = False
    else:
        if resumed:
            _log_unrecorded(registry, candidate)
        model = register(registry, candidate)
        record(
            model,
            Provenance(
                model["name"],
                model["version"],
                candidate.job_id,
                candidate.run_id,
                candidate.logged["digest"],
                candidate.logged.get("serving_digest"),
                candidate.logged.get("serving_uri"),
            ),
        )
        fresh = True
    promotion = champion.gate(registry, model["version"], candidate.echo_accuracy, candidate.loss, fresh=fresh)
    return {**model, "promoted": promotion.promoted, "promotion": promotion.reason}


def register(registry: Registry, candidate: Candidate) -> dict:
    """A new version of the model logged by candidate; a retry after a lost answer finds the one it created."""
    client, name, nonce = registry.client, registry.name, uuid.uuid4().hex
    if (client.tracking_uri, name) not in _registered_names:
        registry.outage.call(lambda: _ensure_registered_model(client, name), "registering the model")
        _registered_names.add((client.tracking_uri, name))
    tags = {
        JOB_ID_TAG: candidate.job_id,
        REGISTRATION_TAG: nonce,
        **champion.score_tags(candidate.echo_accuracy, candidate.loss),
    }
    tried: list[bool] = []

    def create_version() -> ModelVersion:
        if tried:  # only this call knows its nonce: what it finds, it created
            found = [
                v
                for v in client.search_model_versions(f"run_id = '{candidate.run_id}'")
                if v.name == name and (v.tags or {}).get(REGISTRATION_TAG) == nonce
            ]
            if found:
                return found[0]
        tried.append(True)

        def create() -> ModelVersion:
            return client.create_model_version(
                name,
                source=candidate.logged["model_uri"],
                run_id=candidate.run_id,
                model_id=candidate.logged["model_id"],
                tags=tags,
                await_creation_for=0,
            )

        try:
            return create()
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            _ensure_registered_model(client, name)  # deleted since this process saw it
            return create()

    version = registry.outage.call(create_version, "registering the model version")
    return {"uri": provenance.version_uri(name, version.version), "name": name, "version": str(version.version)}


def _log_unrecorded(registry: Registry, candidate: Candidate) -> None:
    """Versions of the run that no record names (left by a lost attempt, or planted): logged, tagged, never used."""
    try:
        found = registry.outage.call(
            lambda: registry.client.search_model_versions(f"run_id = '{candidate.run_id}'"),
            "looking for versions of the run",
        )
    except mlflow.exceptions.MlflowException:
        return
    for version in found:
        if version.name != registry.name or IGNORED_TAG in (version.tags or {}):
            continue
        log.warning(
            "job %s: version %s of %s was registered from its run but never recorded by this service: ignored",
            candidate.job_id,
            version.version,
            version.name,
        )
        registry.outage.call(
            partial(
                registry.client.set_model_version_tag,
                version.name,
                version.version,
                IGNORED_TAG,
                "not recorded by the job that owns the run",
            ),
            "tagging an ignored version",
        )


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
