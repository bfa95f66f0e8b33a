"""The champion gate: the alias that GET /predict serves by default moves only forward.

A new version becomes champion when its held-out echo accuracy reaches the threshold and is not
below the current champion's. The decision is taken under a Redis lock, so two jobs ending at
once cannot both read the old champion and the worse one win; it is written on the version as
tags (and returned for the job's record). People may still move the alias by hand in MLflow.
"""

from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from contract.mlflow_names import ACCURACY_TAG, LOSS_TAG, NOT_FOUND_CODES, PROMOTED_TAG, PROMOTION_REASON_TAG
from worker.tracking.registry import Registry


@dataclass(frozen=True)
class Promotion:
    """Whether the version became champion, and why."""

    promoted: bool
    reason: str


def decide(accuracy: float, threshold: float, champion: tuple[str, float] | None) -> Promotion:
    """The gate itself: champion is (version, its held-out echo accuracy), or None while there is none."""
    if accuracy < threshold:
        return Promotion(False, f"eval_echo_accuracy {accuracy:.3f} < {threshold:g}")
    if champion is not None and champion[1] > accuracy:
        return Promotion(False, f"champion v{champion[0]} scores higher ({champion[1]:.4f} > {accuracy:.4f})")
    before = f"over champion v{champion[0]} ({champion[1]:.4f})" if champion else "the first champion"
    return Promotion(True, f"eval_echo_accuracy {accuracy:.4f} ≥ {threshold:g}, {before}")


def gate(registry: Registry, version: str, accuracy: float, loss: float, fresh: bool = False) -> Promotion:
    """Decide and record whether version becomes the alias's version; idempotent for a version already decided.

    fresh: the version was registered by this very attempt (with its score tags), so it cannot have been decided.
    """
    client, outage, name, alias = registry.client, registry.outage, registry.name, registry.alias
    with registry.redis.lock(registry.champion_lock, timeout=120, blocking_timeout=300):
        if not fresh:
            tags = outage.call(lambda: client.get_model_version(name, version).tags or {}, "reading the version")
            if PROMOTED_TAG in tags:  # decided before this worker was lost: the same answer
                return Promotion(tags[PROMOTED_TAG] == "true", tags.get(PROMOTION_REASON_TAG, ""))
            if ACCURACY_TAG not in tags:
                outage.call(lambda: _record_scores(client, name, version, accuracy, loss), "recording the scores")
        current = outage.call(lambda: _champion(client, name, alias), "reading the champion")
        promotion = decide(accuracy, registry.min_accuracy, current if current and current[0] != version else None)
        outage.call(lambda: _record(client, name, version, promotion, alias), "recording the promotion")
        return promotion


def _champion(client: MlflowClient, name: str, alias: str) -> tuple[str, float] | None:
    try:
        found = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND_CODES:
            return None
        raise
    score = (found.tags or {}).get(ACCURACY_TAG)
    return str(found.version), float(score) if score is not None else 0.0


def score_tags(accuracy: float, loss: float) -> dict[str, str]:
    """A version's held-out scores as its tags (set when it is registered)."""
    return {ACCURACY_TAG: f"{accuracy:.6f}", LOSS_TAG: f"{loss:.6f}"}


def _record_scores(client: MlflowClient, name: str, version: str, accuracy: float, loss: float) -> None:
    for key, value in score_tags(accuracy, loss).items():
        client.set_model_version_tag(name, version, key, value)


def _record(client: MlflowClient, name: str, version: str, promotion: Promotion, alias: str) -> None:
    if promotion.promoted:
        client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, PROMOTION_REASON_TAG, promotion.reason)
    client.set_model_version_tag(name, version, PROMOTED_TAG, "true" if promotion.promoted else "false")
