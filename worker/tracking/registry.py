"""Where a trained model's versions go: the registered model, how MLflow is called, and the champion gate's settings."""

from dataclasses import dataclass

from mlflow.tracking import MlflowClient
from redis import Redis

from worker.retry import Outage


@dataclass(frozen=True)
class Registry:
    """The registry as one attempt reaches it (its MLflow calls through outage, guarded by its leases)."""

    client: MlflowClient
    outage: Outage
    redis: Redis  # where the champion gate takes its lock
    champion_lock: str
    name: str
    alias: str
    min_accuracy: float


def champion_lock(prefix: str) -> str:
    """The Redis lock of the champion gate under a key prefix: every attempt's gate takes the same one."""
    return f"{prefix}:champion-lock"
