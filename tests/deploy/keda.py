"""KEDA's ScaledObject checked against the fields KEDA documents: its custom resources have no schema
that kubernetes-validate bundles, so this module lists what the documentation allows.

Sources (KEDA 2.20, the newest release when written; the manifests need 2.17 or newer for
fallback.behavior currentReplicasIfHigher):
- https://keda.sh/docs/2.20/reference/scaledobject-spec/ (kedacore/keda-docs,
  content/docs/2.20/reference/scaledobject-spec.md): spec, scaleTargetRef, fallback, advanced,
  scalingModifiers, trigger fields.
- https://keda.sh/docs/2.20/scalers/redis-lists/ (content/docs/2.20/scalers/redis-lists.md): the
  redis trigger's metadata.
- https://keda.sh/docs/2.20/concepts/scaling-deployments/#scaling-modifiers: a formula names its
  triggers, each of which must then have a name.
The HorizontalPodAutoscaler behavior KEDA passes on is Kubernetes' own type: checked against its schema.
"""

import importlib.resources
import json
import re
from typing import Any

import jsonschema
from referencing import Registry, Resource

API_VERSION = "keda.sh/v1alpha1"
SPEC = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}
SPEC_INTEGERS = {
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
}
SCALE_TARGET_REF = {"apiVersion", "kind", "name", "envSourceContainerName"}
FALLBACK = {"failureThreshold", "replicas", "behavior"}
FALLBACK_REQUIRED = {"failureThreshold", "replicas"}
FALLBACK_BEHAVIORS = {
    "static",
    "currentReplicas",
    "currentReplicasIfHigher",
    "currentReplicasIfLower",
    "scalingModifiers",
}
ADVANCED = {"restoreToOriginalReplicaCount", "horizontalPodAutoscalerConfig", "scalingModifiers"}
HPA_CONFIG = {"name", "behavior"}
SCALING_MODIFIERS = {"target", "activationTarget", "metricType", "formula"}
SCALING_MODIFIERS_REQUIRED = {"target", "formula"}
METRIC_TYPES = {"AverageValue", "Value", "Utilization"}
MODIFIER_METRIC_TYPES = {"AverageValue", "Value"}
TRIGGER = {"type", "metadata", "name", "useCachedMetrics", "authenticationRef", "metricType"}
# The redis trigger's metadata (redis-lists page): every value a string.
REDIS_METADATA = {
    "address",
    "host",
    "port",
    "usernameFromEnv",
    "passwordFromEnv",
    "listName",
    "listLength",
    "activationListLength",
    "enableTLS",
    "unsafeSsl",
    "databaseIndex",
    "addressFromEnv",
    "hostFromEnv",
    "portFromEnv",
}
REDIS_REQUIRED = {"listName", "listLength"}
REDIS_ADDRESS = ({"address"}, {"host", "port"}, {"addressFromEnv"}, {"hostFromEnv", "portFromEnv"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words of expr's language a formula may use besides trigger names (https://expr.medv.io/docs/Language-Definition).
_EXPR_WORDS = {"and", "or", "not", "in", "nil", "true", "false", "min", "max", "abs", "ceil", "floor", "round", "count"}


def _unknown(where: str, given: dict, allowed: set[str]) -> list[str]:
    return [f"{where}.{key}: not a field KEDA documents" for key in sorted(set(given) - allowed)]


def _missing(where: str, given: dict, required: set[str]) -> list[str]:
    return [f"{where}.{key}: required" for key in sorted(required - set(given))]


def hpa_behavior_problems(behavior: Any, kubernetes_version: str) -> list[str]:
    """The behavior against Kubernetes' HorizontalPodAutoscalerBehavior (autoscaling/v2), strictly."""
    folder = f"kubernetes-json-schema/v{kubernetes_version}-local-strict/_definitions.json"
    definitions = json.loads(importlib.resources.files("kubernetes_validate").joinpath(folder).read_text())
    registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    schema = {"$ref": f"{definitions['$id']}#/$defs/io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"}
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [
        f"advanced.horizontalPodAutoscalerConfig.behavior: {error.message}" for error in validator.iter_errors(behavior)
    ]


def trigger_problems(index: int, trigger: dict) -> list[str]:
    where = f"triggers[{index}]"
    problems = _unknown(where, trigger, TRIGGER) + _missing(where, trigger, {"type", "metadata"})
    if "metricType" in trigger and trigger["metricType"] not in METRIC_TYPES:
        problems.append(f"{where}.metricType: {trigger['metricType']!r}")
    metadata = trigger.get("metadata", {})
    problems += [
        f"{where}.metadata.{key}: {value!r} is not a string"
        for key, value in metadata.items()
        if not isinstance(value, str)
    ]
    if trigger.get("type") != "redis":
        return [*problems, f"{where}.type: {trigger.get('type')!r}: only the redis trigger is checked here"]
    problems += _unknown(f"{where}.metadata", metadata, REDIS_METADATA)
    problems += _missing(f"{where}.metadata", metadata, REDIS_REQUIRED)
    if not any(fields <= set(metadata) for fields in REDIS_ADDRESS):
        problems.append(f"{where}.metadata: no address (address, host and port, or their FromEnv forms)")
    return problems


def formula_names(formula: str) -> set[str]:
    """The trigger names a scalingModifiers formula reads."""
    return {word for word in _IDENTIFIER.findall(formula) if word not in _EXPR_WORDS}


def problems(scaled_object: dict, kubernetes_version: str) -> list[str]:
    """What in a ScaledObject KEDA's documentation does not allow (empty: nothing)."""
    found = _unknown("", scaled_object, {"apiVersion", "kind", "metadata", "spec"})
    if scaled_object.get("apiVersion") != API_VERSION or scaled_object.get("kind") != "ScaledObject":
        found.append(f"not a {API_VERSION} ScaledObject")
    spec = scaled_object.get("spec", {})
    found += _unknown("spec", spec, SPEC) + _missing("spec", spec, {"scaleTargetRef", "triggers"})
    not_integers = [
        key for key in SPEC_INTEGERS & set(spec) if not isinstance(spec[key], int) or isinstance(spec[key], bool)
    ]
    found += [f"spec.{key}: {spec[key]!r} is not an integer" for key in sorted(not_integers)]
    if not not_integers:
        counts = {key: spec.get(key, default) for key, default in (("minReplicaCount", 0), ("maxReplicaCount", 100))}
        if counts["minReplicaCount"] > counts["maxReplicaCount"]:
            found.append("spec.minReplicaCount: above maxReplicaCount")
        if "idleReplicaCount" in spec and spec["idleReplicaCount"] >= counts["minReplicaCount"]:
            found.append("spec.idleReplicaCount: must be less than minReplicaCount")
    target = spec.get("scaleTargetRef", {})
    found += _unknown("spec.scaleTargetRef", target, SCALE_TARGET_REF) + _missing(
        "spec.scaleTargetRef", target, {"name"}
    )
    fallback = spec.get("fallback")
    if fallback is not None:
        found += _unknown("spec.fallback", fallback, FALLBACK) + _missing("spec.fallback", fallback, FALLBACK_REQUIRED)
        if fallback.get("behavior", "static") not in FALLBACK_BEHAVIORS:
            found.append(f"spec.fallback.behavior: {fallback['behavior']!r}")
    advanced = spec.get("advanced", {})
    found += _unknown("spec.advanced", advanced, ADVANCED)
    hpa = advanced.get("horizontalPodAutoscalerConfig", {})
    found += _unknown("spec.advanced.horizontalPodAutoscalerConfig", hpa, HPA_CONFIG)
    if "behavior" in hpa:
        found += hpa_behavior_problems(hpa["behavior"], kubernetes_version)
    triggers = spec.get("triggers", [])
    if not triggers:
        found.append("spec.triggers: empty")
    for index, trigger in enumerate(triggers):
        found += trigger_problems(index, trigger)
    modifiers = advanced.get("scalingModifiers")
    if modifiers is not None:
        where = "spec.advanced.scalingModifiers"
        found += _unknown(where, modifiers, SCALING_MODIFIERS) + _missing(where, modifiers, SCALING_MODIFIERS_REQUIRED)
        found += [
            f"{where}.{key}: {modifiers[key]!r} is not a string"
            for key in ("target", "activationTarget", "formula")
            if key in modifiers and not isinstance(modifiers[key], str)
        ]
        if modifiers.get("metricType", "AverageValue") not in MODIFIER_METRIC_TYPES:
            found.append(f"{where}.metricType: {modifiers['metricType']!r}")
        names = {t.get("name") for t in triggers}
        unknown = formula_names(modifiers.get("formula", "")) - names
        found += [f"{where}.formula: {name!r} names no trigger" for name in sorted(unknown)]
        found += [
            f"triggers[{i}]: a trigger of a formula needs a name" for i, t in enumerate(triggers) if "name" not in t
        ]
    return found
