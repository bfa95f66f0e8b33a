"""The Kubernetes deployment as tests/deploy reads it: rendered by make manifests (kubectl's kustomize),
loaded as objects, with accessors for workloads, containers, environment and selectors, and what
the manifests are compared with (compose's durations, the images' health check, the Secret's name)."""

import importlib.util
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.support import ROOT

DEPLOY = ROOT / "deploy" / "kubernetes"
VARIANTS = ("cpu", "gpu", "gpu-ingress-external-postgres")
# The Kubernetes version every object is validated against, strictly (kubernetes-validate's bundled
# schemas). The oldest minor we claim to run on: kubectl 1.32 renders the manifests here and in CI,
# and managed clusters still offer 1.32. The objects use GA API versions only (v1, apps/v1,
# policy/v1, networking.k8s.io/v1), which later Kubernetes versions keep serving unchanged.
KUBERNETES_VERSION = "1.32.0"
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}

Object = dict[str, Any]


def render(directory: Path) -> dict[str, list[Object]]:
    """make manifests into directory: variant -> its objects."""
    subprocess.run(
        ["make", "--no-print-directory", "manifests", f"MANIFESTS={directory}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return {
        variant: [o for o in yaml.safe_load_all((directory / f"{variant}.yaml").read_text()) if o]
        for variant in VARIANTS
    }


def find(objects: list[Object], kind: str, name: str | None = None) -> list[Object]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Object], kind: str, name: str) -> Object:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def workloads(objects: list[Object]) -> list[Object]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def component(obj: Object) -> str:
    """app.kubernetes.io/component of an object's pods (or of the object)."""
    labels = (
        obj["spec"]["template"]["metadata"]["labels"] if obj["kind"] in WORKLOAD_KINDS else obj["metadata"]["labels"]
    )
    return labels["app.kubernetes.io/component"]


def pod_spec(workload: Object) -> Object:
    return workload["spec"]["template"]["spec"]


def containers(workload: Object) -> list[Object]:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def the_container(objects: list[Object], role: str) -> Object:
    """The one container of the workload whose pods are role."""
    [workload] = [w for w in workloads(objects) if component(w) == role]
    [container] = pod_spec(workload)["containers"]
    return container


def env(container: Object) -> dict[str, Object]:
    """name: the env entry (value or valueFrom) of a container, in order."""
    return {entry["name"]: entry for entry in container.get("env", [])}


def settings(objects: list[Object]) -> dict[str, str]:
    """The data of the settings ConfigMap (its name carries Kustomize's hash)."""
    [config] = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("echo-rnn-settings-")
    ]
    return config["data"]


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def resolved_env(objects: list[Object], container: Object, secret: str = "<secret>") -> dict[str, str]:
    """The values a container's variables take: ConfigMap keys looked up, secrets as the placeholder
    secret, $(NAME) references to earlier variables expanded as Kubernetes expands them."""
    data = settings(objects)
    values: dict[str, str] = {}
    for name, entry in env(container).items():
        if "value" in entry:
            values[name] = _REFERENCE.sub(lambda m: values.get(m[1], m[0]), entry["value"])
        elif "configMapKeyRef" in entry["valueFrom"]:
            values[name] = data[entry["valueFrom"]["configMapKeyRef"]["key"]]
        else:
            values[name] = secret
    return values


def selects(selector: Object, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def selected(objects: list[Object], selector: Object) -> set[str]:
    """Components of the workloads whose pods a selector selects."""
    return {component(w) for w in workloads(objects) if selects(selector, w["spec"]["template"]["metadata"]["labels"])}


@dataclass(frozen=True)
class Image:
    name: str
    tag: str


def image(container: Object) -> Image:
    name, _, tag = container["image"].rpartition(":")
    return Image(name, tag) if name and "/" not in tag else Image(container["image"], "")


def env_container(workload: Object) -> Object:
    """The container whose environment the workload's role reads (its only one)."""
    return pod_spec(workload)["containers"][0]


# --- what the manifests are compared with: compose, the images, the Secret ---------------------------

# .env.example's secrets: the keys of the one Secret the pods read.
SECRET_KEYS = {"POSTGRES_PASSWORD", "API_TOKENS", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SERVICE_PASSWORD", "FLOWER_PASSWORD"}


def compose_variant(variant: str) -> str:
    """The compose variant a Kubernetes variant corresponds to."""
    return "cpu" if variant == "cpu" else "gpu"


def seconds(duration: str) -> int:
    """A compose duration such as 30s."""
    assert re.fullmatch(r"\d+s", duration), duration
    return int(duration[:-1])


def healthcheck_module() -> ModuleType:
    """docker/healthcheck.py, the images' health check (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "docker" / "healthcheck.py")
    assert spec is not None and spec.loader is not None, "docker/healthcheck.py is there"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def secret_name() -> str:
    """The Secret the deployment reads, as base/references.yaml names it."""
    return yaml.safe_load((DEPLOY / "base" / "references.yaml").read_text())["data"]["secretName"]
