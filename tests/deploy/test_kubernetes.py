"""The Kubernetes deployment (deploy/kubernetes) as make manifests renders it: the whole service as
compose runs it (the same docker/bin scripts, images and environment variables), no secret value in
any manifest, the optional Ingress, and the documented way to deploy it."""

import re
import shlex
import tomllib
import urllib.parse

import pytest

from tests.deploy.manifests import (
    SECRET_KEYS,
    VARIANTS,
    component,
    compose_variant,
    containers,
    env,
    find,
    image,
    one,
    pod_spec,
    resolved_env,
    secret_name,
    settings,
    the_container,
    workloads,
)
from tests.docker.parsing import ENV_EXAMPLE, command_words, env_names, read_env_file
from tests.support import ROOT

ROLES = {"api", "worker", "mlflow", "flower", "redis", "postgres"}
# Names of variables that hold a secret (PREDICT_REQUIRES_TOKEN is a switch, not a token).
SECRET_NAME = re.compile(r"PASSWORD|TOKENS$|SECRET_KEY")
# Variables a pod has that its compose service has not, and why: MLflow's backend store URL is
# joined from its parts by Kubernetes (the password stays in the Secret); PostgreSQL's data lives
# below the volume's root (initdb refuses a volume's lost+found).
EXTRA_ENV = {
    "mlflow": {
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_DB",
        "POSTGRES_OPTIONS",
    },
    "postgres": {"PGDATA"},
}
# .env.example's names that are compose's own (its files, published ports and address).
# REDIS_MAXMEMORY: Kubernetes writes the bound into the Redis command (the same as compose runs).
COMPOSE_ONLY = {
    "COMPOSE_FILE",
    "COMPOSE_PROJECT_NAME",
    "PUBLISH_ADDRESS",
    "API_PORT",
    "MLFLOW_PORT",
    "FLOWER_PORT",
    "REDIS_MAXMEMORY",
}
KUBERNETES_ONLY = {"POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_OPTIONS"}


# --- what is rendered ------------------------------------------------------------------------------


def test_each_variant_has_the_whole_service(rendered):
    # The stateful ones are StatefulSets: their claims outlive kubectl delete -k.
    expected = (
        {("Deployment", f"echo-rnn-{r}") for r in ("api", "worker", "flower")}
        | {("StatefulSet", f"echo-rnn-{r}") for r in ("redis", "postgres", "mlflow")}
        | {
            *{("Service", f"echo-rnn-{r}") for r in ROLES - {"worker"}},
            ("PodDisruptionBudget", "echo-rnn-api"),
            ("PodDisruptionBudget", "echo-rnn-worker"),
            ("ScaledObject", "echo-rnn-worker"),
            ("NetworkPolicy", "echo-rnn-redis"),
            ("NetworkPolicy", "echo-rnn-postgres"),
        }
    )
    names = {
        variant: {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] != "ConfigMap"}
        for variant, objects in rendered.items()
    }
    assert names["cpu"] == names["gpu"] == expected
    postgres = {(kind, "echo-rnn-postgres") for kind in ("StatefulSet", "Service", "NetworkPolicy")}
    assert names["gpu-ingress-external-postgres"] == (expected - postgres) | {("Ingress", "echo-rnn")}
    assert not any(o["kind"] == "Secret" for objects in rendered.values() for o in objects)


@pytest.mark.parametrize("variant", VARIANTS)
def test_everything_is_in_one_namespace_and_keda_finds_redis_there(rendered, variant):
    objects = rendered[variant]
    namespaces = {o["metadata"].get("namespace") for o in objects}
    assert namespaces == {"echo-rnn"}
    [scaled] = find(objects, "ScaledObject")
    redis = one(objects, "Service", "echo-rnn-redis")
    for trigger in scaled["spec"]["triggers"]:
        host, _, port = trigger["metadata"]["address"].rpartition(":")
        assert host == f"echo-rnn-redis.{redis['metadata']['namespace']}.svc.cluster.local"
        assert int(port) == redis["spec"]["ports"][0]["port"]


# --- the same service as compose -------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_role_runs_what_compose_runs(rendered, compose, variant):
    services = compose[compose_variant(variant)]["services"]
    roles = {component(w) for w in workloads(rendered[variant])}
    assert roles == ROLES - ({"postgres"} if "external-postgres" in variant else set())
    for role in roles:
        container = the_container(rendered[variant], role)
        if "command" in services[role]:
            assert container["command"] == command_words(services[role]["command"]), role
        assert image(container).name == services[role]["image"].rpartition(":")[0], role


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_role_gets_compose_environment(rendered, compose, variant):
    services = compose[compose_variant(variant)]["services"]
    for workload in workloads(rendered[variant]):
        role = component(workload)
        given = set(env(pod_spec(workload)["containers"][0]))
        assert given - EXTRA_ENV.get(role, set()) == env_names(services[role]), role
    worker = resolved_env(rendered[variant], the_container(rendered[variant], "worker"))
    # As compose.cpu.yaml and compose.gpu.yaml: a child keeps TensorFlow loaded without a GPU only.
    assert worker["WORKER_MAX_TASKS_PER_CHILD"] == ("0" if variant == "cpu" else "1")
    assert worker["WORKER_CONCURRENCY"] == "1"


def test_settings_are_env_examples_non_secret_ones(rendered):
    example = set(read_env_file(ENV_EXAMPLE))
    for variant, objects in rendered.items():
        assert set(settings(objects)) == (example - COMPOSE_ONLY - SECRET_KEYS) | KUBERNETES_ONLY, variant
        used = {
            entry["valueFrom"]["configMapKeyRef"]["key"]
            for w in workloads(objects)
            for c in containers(w)
            for entry in env(c).values()
            if "configMapKeyRef" in entry.get("valueFrom", {})
        }
        assert used == set(settings(objects)), f"{variant}: settings nothing reads, or read and missing"


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_apps_reach_redis_and_mlflow_by_their_services(rendered, variant):
    objects = rendered[variant]
    redis, mlflow = one(objects, "Service", "echo-rnn-redis"), one(objects, "Service", "echo-rnn-mlflow")
    for role in ("api", "worker", "flower"):
        values = resolved_env(objects, the_container(objects, role))
        url = urllib.parse.urlparse(values["REDIS_URL"])
        assert (url.hostname, url.port) == ("echo-rnn-redis", redis["spec"]["ports"][0]["port"]), role
        tracking = urllib.parse.urlparse(values["MLFLOW_TRACKING_URI"])
        assert (tracking.hostname, tracking.port) == ("echo-rnn-mlflow", mlflow["spec"]["ports"][0]["port"]), role
    allowed = resolved_env(objects, the_container(objects, "mlflow"))["MLFLOW_ALLOWED_HOSTS"].split(",")
    assert {"echo-rnn-mlflow", f"echo-rnn-mlflow:{mlflow['spec']['ports'][0]['port']}"} <= set(allowed)


@pytest.mark.parametrize("variant", VARIANTS)
def test_mlflow_keeps_its_store_in_postgres_and_its_artifacts_on_a_volume(rendered, variant):
    objects = rendered[variant]
    mlflow = resolved_env(objects, the_container(objects, "mlflow"), secret="s3cret")
    store = urllib.parse.urlparse(mlflow["MLFLOW_BACKEND_STORE_URI"])
    assert store.scheme == "postgresql+psycopg2" and store.password == "s3cret"
    assert store.username == mlflow["POSTGRES_USER"] and store.path == f"/{mlflow['POSTGRES_DB']}"
    assert "client_encoding=utf8" in store.query
    if "external-postgres" in variant:
        assert store.hostname != "echo-rnn-postgres" and "sslmode=require" in store.query
    else:
        service = one(objects, "Service", "echo-rnn-postgres")
        assert (store.hostname, store.port) == ("echo-rnn-postgres", service["spec"]["ports"][0]["port"])
        postgres = resolved_env(objects, the_container(objects, "postgres"), secret="s3cret")
        assert (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]) == (
            store.username,
            store.password,
            mlflow["POSTGRES_DB"],
        )
    server = one(objects, "StatefulSet", "echo-rnn-mlflow")
    [mount] = the_container(objects, "mlflow")["volumeMounts"]
    assert mount["mountPath"] == mlflow["MLFLOW_ARTIFACTS_DESTINATION"]
    assert [claim["metadata"]["name"] for claim in server["spec"]["volumeClaimTemplates"]] == [mount["name"]]
    assert server["spec"]["replicas"] == 1, "one pod on a ReadWriteOnce volume"


def test_redis_keeps_its_append_only_file_on_a_claim(rendered, compose):
    redis = one(rendered["gpu"], "StatefulSet", "echo-rnn-redis")
    words = redis["spec"]["template"]["spec"]["containers"][0]["command"]
    assert words[words.index("--appendonly") + 1] == "yes"
    [mount] = redis["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == "/data"
    assert [t["metadata"]["name"] for t in redis["spec"]["volumeClaimTemplates"]] == [mount["name"]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_redis_is_bounded_under_its_memory_limit_and_evicts_nothing(rendered, variant):
    [container] = one(rendered[variant], "StatefulSet", "echo-rnn-redis")["spec"]["template"]["spec"]["containers"]
    words = container["command"]
    assert words[words.index("--maxmemory-policy") + 1] == "noeviction"
    bound, limit = words[words.index("--maxmemory") + 1], container["resources"]["limits"]["memory"]
    assert bound.endswith("mb") and limit.endswith("Gi")
    # Room above the bound for the append-only file's rewrite (a fork) and Redis's own overhead.
    assert int(bound[:-2]) * 2**20 <= 0.8 * int(limit[:-2]) * 2**30, (bound, limit)


# --- images ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_images_are_pinned_by_value(rendered, compose, variant):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    services = compose[compose_variant(variant)]["services"]
    for workload in workloads(rendered[variant]):
        role, reference = component(workload), image(pod_spec(workload)["containers"][0])
        assert reference.tag and reference.tag != "latest", (role, reference)
        if role in ("redis", "postgres"):
            assert f"{reference.name}:{reference.tag}" == services[role]["image"], "the image compose runs"
        else:
            assert reference.tag.split("-")[0] == version, (role, reference)
    worker = image(the_container(rendered[variant], "worker"))
    assert worker.tag.endswith("-cpu" if variant == "cpu" else "-gpu")
    assert worker.tag.rpartition("-")[2] == services["worker"]["image"].rpartition(":")[2], (
        "compose's build of the worker"
    )


# --- secrets --------------------------------------------------------------------------------------


def string_values(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in string_values(v)]
    if isinstance(value, list):
        return [s for v in value for s in string_values(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_secret_value_in_a_manifest(rendered, variant):
    objects, name = rendered[variant], secret_name()
    referenced = set()
    for workload in workloads(objects):
        for container in containers(workload):
            for variable, entry in env(container).items():
                source = entry.get("valueFrom", {})
                if "secretKeyRef" in source:
                    assert source["secretKeyRef"]["name"] == name, variable
                    referenced.add(source["secretKeyRef"]["key"])
                elif re.search(SECRET_NAME, variable):
                    pytest.fail(f"{container['name']}: {variable} is not read from the Secret")
    assert referenced == SECRET_KEYS, "the Secret holds .env.example's secrets, under the same names"
    assert not {key for key in settings(objects) if re.search(SECRET_NAME, key)}
    # A URL with credentials takes its password from a variable the Secret fills, never a literal.
    for text in string_values(objects):
        for match in re.finditer(r"://[^/@\s]*:([^/@\s]*)@", text):
            assert re.fullmatch(r"\$\([A-Z_]+\)", match[1]), text
    assert not any("change-me" in text for text in string_values(objects))


# --- the optional Ingress --------------------------------------------------------------------------


def test_the_ingress_reaches_the_services_and_mlflow_knows_its_name(rendered):
    objects = rendered["gpu-ingress-external-postgres"]
    ingress = one(objects, "Ingress", "echo-rnn")
    hosts = {}
    for rule in ingress["spec"]["rules"]:
        [path] = rule["http"]["paths"]
        backend = path["backend"]["service"]
        service = one(objects, "Service", backend["name"])
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
        hosts[backend["name"]] = rule["host"]
    assert set(hosts) == {"echo-rnn-api", "echo-rnn-mlflow", "echo-rnn-flower"}
    assert set(ingress["spec"]["tls"][0]["hosts"]) == set(hosts.values())
    mlflow = resolved_env(objects, the_container(objects, "mlflow"))
    assert hosts["echo-rnn-mlflow"] in mlflow["MLFLOW_ALLOWED_HOSTS"].split(",")
    ui = resolved_env(objects, the_container(objects, "api"))["MLFLOW_UI_URL"]
    assert urllib.parse.urlparse(ui).hostname == hosts["echo-rnn-mlflow"]


# --- how to deploy it -------------------------------------------------------------------------------


def test_the_docs_say_how_to_deploy(rendered):
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    lines = docs[docs.rindex("\n", 0, docs.index("create secret generic")) + 1 :].splitlines()
    end = next(i for i, line in enumerate(lines) if not line.rstrip().endswith("\\"))
    words = shlex.split(" ".join(line.rstrip().rstrip("\\") for line in lines[: end + 1]))
    assert words[words.index("generic") + 1] == secret_name()
    assert words[words.index("-n") + 1] == one(rendered["gpu"], "Service", "echo-rnn-api")["metadata"]["namespace"]
    keys = {w.split("=", 1)[1].split("=")[0] for w in words if w.startswith("--from-literal=")}
    assert keys == SECRET_KEYS
    for needed in (
        "kubectl apply -k deploy/kubernetes/overlays/gpu",
        "kubectl apply -k deploy/kubernetes/overlays/cpu",
        "make manifests",
        "KEDA",
    ):
        assert needed in docs, needed
    readme = (ROOT / "README.md").read_text()
    assert "docs/kubernetes.md" in readme and "kubectl apply -k" in readme
    assert "build/" in (ROOT / ".gitignore").read_text().split()
