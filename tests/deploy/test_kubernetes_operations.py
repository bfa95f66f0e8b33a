"""The Kubernetes deployment (deploy/kubernetes) in operation: probes on every container, grace
periods for a last checkpoint, resources, GPUs for the GPU workers only, unprivileged pods, workers
autoscaled by KEDA on the work waiting and being done, PodDisruptionBudgets, anti-affinity, and
Redis and PostgreSQL reachable only from the pods that need them."""

import re
import urllib.parse

import pytest
from celery import Celery
from kombu.transport.redis import Channel

from contract.dispatch import pending_key
from contract.settings import CommonSettings
from tests.deploy.manifests import (
    VARIANTS,
    Object,
    component,
    compose_variant,
    containers,
    env,
    env_container,
    find,
    healthcheck_module,
    one,
    pod_spec,
    resolved_env,
    seconds,
    selected,
    the_container,
    workloads,
)
from tests.docker.parsing import DOCKERFILES, parse_dockerfile
from tests.support import ROOT
from worker.settings import WorkerSettings

# --- probes, grace periods, resources ----------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_has_liveness_and_readiness_probes(rendered, variant):
    for workload in workloads(rendered[variant]):
        for container in containers(workload):
            ports = {p["name"] for p in container.get("ports", [])}
            for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = container.get(kind)
                assert probe, f"{workload['metadata']['name']}/{container['name']} has no {kind}"
                if "httpGet" in probe:
                    assert probe["httpGet"]["port"] in ports, (container["name"], kind)
                else:
                    assert probe["exec"]["command"], (container["name"], kind)


@pytest.mark.parametrize("role", ["api", "mlflow", "flower"])
def test_http_probes_ask_the_health_endpoints_the_images_check(rendered, role):
    """docker/healthcheck.py (the images' HEALTHCHECK) names each role's health path and port."""
    variable, _, path = healthcheck_module().HTTP[role]
    container = the_container(rendered["gpu"], role)
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env(container)[variable]["value"] == str(port[container["livenessProbe"]["httpGet"]["port"]])
    assert container["livenessProbe"]["httpGet"]["path"] == container["startupProbe"]["httpGet"]["path"] == path
    # The API is ready once Redis and MLflow answer it too; its liveness asks only that it answers.
    ready = "/readyz" if role == "api" else path
    assert container["readinessProbe"]["httpGet"]["path"] == ready


def test_worker_probes_ping_its_own_celery_node(rendered):
    container = the_container(rendered["gpu"], "worker")
    _, stages = parse_dockerfile(DOCKERFILES["worker"])
    workdir = stages[-1].last("WORKDIR").args
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[kind]["exec"]["command"] == ["python", f"{workdir}/docker/healthcheck.py", "worker"], kind
    # The ping goes through Redis: liveness lets a Redis outage pass for as long as a job waits for Redis.
    liveness = container["livenessProbe"]
    assert (
        liveness["periodSeconds"] * liveness["failureThreshold"] >= WorkerSettings.model_fields["redis_retry_s"].default
    )
    assert liveness["timeoutSeconds"] > healthcheck_module().TIMEOUT_S


@pytest.mark.parametrize("variant", VARIANTS)
def test_grace_periods_leave_time_for_a_last_checkpoint(rendered, compose, variant):
    objects, services = rendered[variant], compose[compose_variant(variant)]["services"]
    worker = pod_spec(one(objects, "Deployment", "echo-rnn-worker"))["terminationGracePeriodSeconds"]
    fields = WorkerSettings.model_fields
    # A checkpoint every 2 s and a batch of loss points in flight to MLflow (one request's timeout).
    assert worker >= fields["log_flush_s"].default + fields["mlflow_http_request_timeout"].default
    assert worker >= seconds(services["worker"]["stop_grace_period"])
    api = pod_spec(one(objects, "Deployment", "echo-rnn-api"))["terminationGracePeriodSeconds"]
    kill_timeout = int(re.search(r"--workers-kill-timeout (\d+)", (ROOT / "docker" / "bin" / "api").read_text())[1])
    assert api > kill_timeout and api == seconds(services["api"]["stop_grace_period"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_asks_for_what_it_needs(rendered, variant):
    for workload in workloads(rendered[variant]):
        for container in containers(workload):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], container[
                "name"
            ]
    # One granian process per CPU the API pod asks for: docker/bin/api would count the node's.
    api = the_container(rendered[variant], "api")
    assert resolved_env(rendered[variant], api)["API_WORKERS"] == str(api["resources"]["requests"]["cpu"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_gpus_only_for_the_gpu_workers(rendered, variant):
    gpu_variant = variant != "cpu"
    for workload in workloads(rendered[variant]):
        role, spec = component(workload), pod_spec(workload)
        limits = {name: c["resources"].get("limits", {}) for name, c in ((c["name"], c) for c in containers(workload))}
        wants_gpu = gpu_variant and role == "worker"
        assert all(("nvidia.com/gpu" in limit) == wants_gpu for limit in limits.values()), role
        tolerates = any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", []))
        assert tolerates == wants_gpu and ("nodeSelector" in spec) == wants_gpu, role
        if wants_gpu:
            assert limits["worker"]["nvidia.com/gpu"] == 1, "one GPU per pod, one job per GPU"


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_run_unprivileged(rendered, variant):
    for workload in workloads(rendered[variant]):
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False and spec["securityContext"]["runAsNonRoot"] is True
        for container in containers(workload):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for role in ("api", "worker", "mlflow"):
        _, stages = parse_dockerfile(DOCKERFILES[role])
        uid = int(stages[-1].last("USER").args.split(":")[0])
        [workload] = [w for w in workloads(rendered[variant]) if component(w) == role]
        assert pod_spec(workload)["securityContext"]["runAsUser"] == uid, role


# --- autoscaling and disruptions ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_workers_scale_on_the_work_waiting_and_being_done(rendered, variant):
    objects = rendered[variant]
    [scaled] = find(objects, "ScaledObject")
    worker = one(objects, "Deployment", "echo-rnn-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"], "KEDA's HorizontalPodAutoscaler owns the count"
    lists = {t["name"]: t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
    prefix = CommonSettings.model_fields["job_key_prefix"].default
    assert lists == {
        "waiting": pending_key(prefix),
        "queued": Celery().conf.task_default_queue,
        "running": f"{prefix}:status:running",
        "delivered": Channel.unacked_key,
    }
    assert all(t["type"] == "redis" and t["metadata"]["databaseIndex"] == "0" for t in scaled["spec"]["triggers"])
    assert urllib.parse.urlparse(resolved_env(objects, env_container(worker))["REDIS_URL"]).path == "/0"
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
    assert modifiers["formula"] == "waiting + queued + (running < delivered ? running : delivered)"
    # One pod per job: the target is what one pod runs at a time.
    assert modifiers["target"] == resolved_env(objects, env_container(worker))["WORKER_CONCURRENCY"]
    assert modifiers.get("metricType", "AverageValue") == "AverageValue"
    # Never zero: the workers run the watchdog that resumes lost jobs.
    assert scaled["spec"]["minReplicaCount"] >= 1
    assert scaled["spec"]["fallback"]["behavior"] == "currentReplicasIfHigher"


@pytest.mark.parametrize("variant", VARIANTS)
def test_disruption_budgets_keep_the_api_up_and_let_drains_through(rendered, variant):
    objects = rendered[variant]
    budgets = {b["metadata"]["name"]: b for b in find(objects, "PodDisruptionBudget")}
    assert {frozenset(selected(objects, b["spec"]["selector"])) for b in budgets.values()} == {
        frozenset({"api"}),
        frozenset({"worker"}),
    }
    api = one(objects, "Deployment", "echo-rnn-api")
    assert 1 <= budgets["echo-rnn-api"]["spec"]["minAvailable"] < api["spec"]["replicas"]
    assert budgets["echo-rnn-worker"]["spec"]["maxUnavailable"] >= 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_replicas_spread_over_nodes(rendered, variant):
    for name in ("echo-rnn-api", "echo-rnn-worker"):
        workload = one(rendered[variant], "Deployment", name)
        [term] = pod_spec(workload)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert selected(rendered[variant], term["podAffinityTerm"]["labelSelector"]) == {component(workload)}


# --- network policies ------------------------------------------------------------------------------


def network_clients(objects: list[Object], service: str, variable_names: set[str]) -> tuple[set[str], set[str]]:
    """(the components a NetworkPolicy lets reach service's pods, the components whose env names it)."""
    policy = one(objects, "NetworkPolicy", service)
    assert selected(objects, policy["spec"]["podSelector"]) == {service.removeprefix("echo-rnn-")}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    allowed = set()
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            if "namespaceSelector" not in peer:
                allowed |= selected(objects, peer["podSelector"])
    needing = {
        component(w)
        for w in workloads(objects)
        if any(
            service in value
            for name, value in resolved_env(objects, env_container(w)).items()
            if name in variable_names
        )
    }
    return allowed, needing


@pytest.mark.parametrize("variant", VARIANTS)
def test_redis_answers_only_the_pods_that_need_it(rendered, variant):
    allowed, needing = network_clients(rendered[variant], "echo-rnn-redis", {"REDIS_URL"})
    assert allowed == needing == {"api", "worker", "flower"}
    # And KEDA's operator, in its own namespace, for the queue's length.
    [rule] = one(rendered[variant], "NetworkPolicy", "echo-rnn-redis")["spec"]["ingress"]
    [keda] = [peer for peer in rule["from"] if "namespaceSelector" in peer]
    assert keda["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "keda"}
    assert keda["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "keda-operator"}


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_postgres_answers_only_mlflow(rendered, variant):
    allowed, needing = network_clients(
        rendered[variant], "echo-rnn-postgres", {"POSTGRES_HOST", "MLFLOW_BACKEND_STORE_URI"}
    )
    assert allowed == needing == {"mlflow"}
