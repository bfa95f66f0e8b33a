"""Every object make manifests renders is valid for Kubernetes, strictly (no unknown field), at the
pinned version; KEDA's ScaledObject, which has no bundled schema, uses only the fields KEDA documents."""

import copy
import subprocess

import kubernetes_validate
import pytest
from kubernetes_validate.utils import SchemaNotFoundError, all_versions

from tests.deploy import keda
from tests.deploy.manifests import KUBERNETES_VERSION, VARIANTS, find, one
from tests.support import ROOT


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_pinned_version_has_schemas_of_its_own():
    """kubernetes-validate quietly falls back to an older version's schemas: it must ship this one."""
    assert KUBERNETES_VERSION in all_versions()


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_validates_strictly(rendered, variant):
    without_schema = set()
    for obj in rendered[variant]:
        try:
            validate(obj)
        except SchemaNotFoundError:
            without_schema.add((obj["apiVersion"], obj["kind"]))
    # KEDA's only: each other kind is checked by Kubernetes' own schema.
    assert without_schema == {(keda.API_VERSION, "ScaledObject")}
    assert len(rendered[variant]) >= 15


@pytest.mark.parametrize("mistake", ["misspelt field", "wrong type", "unknown nested field"])
def test_strict_validation_catches_a_mistake(rendered, mistake):
    deployment = copy.deepcopy(one(rendered["gpu"], "Deployment", "echo-rnn-worker"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    if mistake == "misspelt field":
        container["livenesProbe"] = container.pop("livenessProbe")
    elif mistake == "wrong type":
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "60"
    else:
        container["resources"]["limits"]["nvidia.com/gpu"] = {"count": 1}
        container["securityContext"]["runAsRoot"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


@pytest.mark.parametrize("variant", VARIANTS)
def test_scaled_object_uses_only_documented_fields(rendered, variant):
    [scaled] = find(rendered[variant], "ScaledObject")
    assert keda.problems(scaled, KUBERNETES_VERSION) == []


@pytest.mark.parametrize(
    ("mistake", "reported"),
    [
        (lambda s: s["spec"].update(pollingIntervall=15), "spec.pollingIntervall"),
        (lambda s: s["spec"]["triggers"][0]["metadata"].update(listLenght="1"), "metadata.listLenght"),
        (lambda s: s["spec"]["triggers"][0]["metadata"].update(databaseIndex=0), "is not a string"),
        (lambda s: s["spec"]["triggers"][1]["metadata"].pop("address"), "no address"),
        (lambda s: s["spec"]["triggers"][2].pop("name"), "needs a name"),
        (
            lambda s: s["spec"]["advanced"]["scalingModifiers"].update(formula="queued + runing"),
            "'runing' names no trigger",
        ),
        (lambda s: s["spec"]["fallback"].update(behavior="currentReplicasIfHigh"), "spec.fallback.behavior"),
        (lambda s: s["spec"].update(minReplicaCount="1"), "is not an integer"),
        (
            lambda s: s["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"].update(window=1),
            "horizontalPodAutoscalerConfig.behavior",
        ),
    ],
    ids=[
        "spec field",
        "metadata field",
        "metadata type",
        "address",
        "trigger name",
        "formula",
        "fallback",
        "integer",
        "hpa",
    ],
)
def test_keda_check_catches_a_mistake(rendered, mistake, reported):
    scaled = copy.deepcopy(find(rendered["gpu"], "ScaledObject")[0])
    mistake(scaled)
    assert any(reported in problem for problem in keda.problems(scaled, KUBERNETES_VERSION))


def test_make_manifests_says_what_to_install_without_kubectl(tmp_path):
    command = ["make", "--no-print-directory", "manifests", "KUBECTL=/nowhere/kubectl", f"MANIFESTS={tmp_path}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "Install kubectl 1.27 or newer" in result.stderr
    assert not list(tmp_path.iterdir())
