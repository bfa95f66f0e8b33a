"""Registered model versions as the API shows them: one shape for /predict's answers and /models."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from contract import provenance
from contract.clock import iso
from contract.mlflow_names import JOB_ID_TAG, PROMOTED_TAG, PROMOTION_REASON_TAG

FINAL_METRICS = ("loss", "epoch_loss", "echo_accuracy", "eval_echo_accuracy", "eval_loss")


@dataclass(frozen=True)
class ModelInfo:
    """A registered model version as predictions report it."""

    name: str
    version: str
    uri: str
    run_id: str | None
    job_id: str | None
    model_id: str | None = field(default=None, compare=False)  # its logged model: where its files are
    owner: str | None = field(default=None, compare=False)  # the client of its job, as the job's record says

    @classmethod
    def of(cls, version: ModelVersion) -> "ModelInfo":
        """The info of an MLflow model version."""
        return cls(
            name=version.name,
            version=str(version.version),
            uri=provenance.version_uri(version.name, version.version),
            run_id=version.run_id,
            job_id=(version.tags or {}).get(JOB_ID_TAG),
            model_id=version.model_id,
        )

    def as_dict(self, can_see: Callable[[str | None], bool] = lambda _: True) -> dict[str, Any]:
        """The JSON shape of this reference; its job's id only for a caller who may see that job (can_see(owner))."""
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "run_id": self.run_id,
            "job_id": self.job_id if self.job_id and can_see(self.owner) else None,
        }


def list_versions(
    client: MlflowClient, name: str, champion: str, limit: int = 100, below: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of name's versions, newest first (those numbered below below, when given), with aliases (champion among
    them), the gate's verdict, creation time and its run's final metrics; and the next page's cursor (None on the last).

    Four requests a page whatever its size and the registry's: the versions, their aliases, the experiments, their
    runs. A cursor is a version number, so versions registered meanwhile never shift a page.
    """
    search = f"name = '{name}'" + (f" AND version_number < {int(below)}" if below is not None else "")
    versions = list(client.search_model_versions(search, max_results=limit + 1, order_by=["version_number DESC"]))
    more, versions = len(versions) > limit, versions[:limit]
    aliases: dict[str, list[str]] = {}  # a search leaves versions' aliases out: the registered model has them
    for alias, version in (client.get_registered_model(name).aliases if versions else {}).items():
        aliases.setdefault(str(version), []).append(alias)
    metrics = _run_metrics(client, {v.run_id for v in versions if v.run_id})
    return [
        {
            **ModelInfo.of(v).as_dict(),
            "aliases": sorted(aliases.get(str(v.version), [])),
            "champion": champion in aliases.get(str(v.version), []),
            "promoted": {"true": True, "false": False}.get((v.tags or {}).get(PROMOTED_TAG, "")),
            "promotion": (v.tags or {}).get(PROMOTION_REASON_TAG),
            "created_at": iso(v.creation_timestamp),
            "metrics": {k: metrics.get(v.run_id or "", {}).get(k) for k in FINAL_METRICS},
        }
        for v in versions
    ], (int(versions[-1].version) if more else None)


def hide_unseen_jobs(
    listed: list[dict[str, Any]], owners: Callable[[list[str]], list[str | None]], can_see: Callable[[str | None], bool]
) -> None:
    """Blank the job ids of versions whose job the caller may not see; owners(job ids) reads their owners at once."""
    job_ids = [v["job_id"] for v in listed if v["job_id"]]
    owner_of = dict(zip(job_ids, owners(job_ids))) if job_ids else {}
    for v in listed:
        if v["job_id"] and not can_see(owner_of.get(v["job_id"])):
            v["job_id"] = None


def _run_metrics(client: MlflowClient, run_ids: set[str]) -> dict[str, dict[str, float]]:
    if not run_ids:
        return {}
    experiments = [e.experiment_id for e in client.search_experiments()]
    quoted = ", ".join(f"'{r}'" for r in sorted(run_ids))
    runs = client.search_runs(experiments, f"attributes.run_id IN ({quoted})", max_results=len(run_ids))
    return {run.info.run_id: run.data.metrics for run in runs}
