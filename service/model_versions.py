"""Registered model versions as the API shows them: one shape for /predict's answers and /models."""

from dataclasses import dataclass, field
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from contract.clock import iso

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

    @classmethod
    def of(cls, version: ModelVersion) -> "ModelInfo":
        """The info of an MLflow model version."""
        return cls(
            name=version.name,
            version=str(version.version),
            uri=f"models:/{version.name}/{version.version}",
            run_id=version.run_id,
            job_id=(version.tags or {}).get("job_id"),
            model_id=version.model_id,
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of this reference."""
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "run_id": self.run_id,
            "job_id": self.job_id,
        }


def list_versions(client: MlflowClient, name: str, champion: str) -> list[dict[str, Any]]:
    """Every version of name, newest first, with aliases (champion among them), the gate's verdict, creation time and its run's final metrics.

    Four requests whatever the number of versions: the versions, their aliases, the experiments, their runs.
    """
    versions = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"])
    aliases: dict[str, list[str]] = {}  # a search leaves versions' aliases out: the registered model has them
    for alias, version in (client.get_registered_model(name).aliases if versions else {}).items():
        aliases.setdefault(str(version), []).append(alias)
    metrics = _run_metrics(client, {v.run_id for v in versions if v.run_id})
    return [
        {
            **ModelInfo.of(v).as_dict(),
            "aliases": sorted(aliases.get(str(v.version), [])),
            "champion": champion in aliases.get(str(v.version), []),
            "promoted": {"true": True, "false": False}.get((v.tags or {}).get("promoted", "")),
            "promotion": (v.tags or {}).get("promotion_reason"),
            "created_at": iso(v.creation_timestamp),
            "metrics": {k: metrics.get(v.run_id or "", {}).get(k) for k in FINAL_METRICS},
        }
        for v in versions
    ]


def _run_metrics(client: MlflowClient, run_ids: set[str]) -> dict[str, dict[str, float]]:
    if not run_ids:
        return {}
    experiments = [e.experiment_id for e in client.search_experiments()]
    quoted = ", ".join(f"'{r}'" for r in sorted(run_ids))
    runs = client.search_runs(experiments, f"attributes.run_id IN ({quoted})", max_results=len(run_ids))
    return {run.info.run_id: run.data.metrics for run in runs}
