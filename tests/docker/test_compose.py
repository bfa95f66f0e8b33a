"""compose.yaml with compose.gpu.yaml (the default) or compose.cpu.yaml: valid Compose files, within
what docker-compose 1.29 and Compose v2 both read, that bring up the whole service as make run does
(the same docker/bin scripts, the same environment), on production parts, behind logins."""

import json
import os
import re
import shlex
import subprocess
import urllib.parse

import jsonschema
import pytest
from pydantic_settings import BaseSettings

from service.settings import Settings
from tests.docker.parsing import (
    COMPOSE,
    COMPOSE_CPU,
    COMPOSE_GPU,
    DOCKER,
    DOCKERFILES,
    ENV_EXAMPLE,
    SCHEMA,
    MissingVariable,
    command_words,
    env_names,
    env_value,
    interpolate,
    load_compose,
    merge,
    parse_dockerfile,
    procfile,
    read_env_file,
    read_lock,
    referenced_variables,
    required_variables,
    script_variables,
    strip_tags,
)
from tests.support import ROOT
from worker.settings import WorkerSettings

SERVICES = {"redis", "postgres", "mlflow", "api", "worker", "flower"}
PUBLISHED = {"api": 8000, "mlflow": 5000, "flower": 5555}
NEEDS = {"mlflow": {"postgres"}, "api": {"redis", "mlflow"}, "worker": {"redis", "mlflow"}, "flower": {"redis"}}
# The settings class each role's Python process reads its environment through.
SETTINGS: dict[str, type[BaseSettings]] = {"api": Settings, "worker": WorkerSettings, "flower": WorkerSettings}
# Read by MLflow's client in the API and the workers: the service account's login.
MLFLOW_CLIENT = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
# The secrets .env must give (compose's ${VAR:?}); .env.example has the placeholder for each.
SECRETS = {"POSTGRES_PASSWORD", "API_TOKENS", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SERVICE_PASSWORD", "FLOWER_PASSWORD"}
PLACEHOLDER = "change-me"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA.read_text())


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def gpu(example_env) -> dict:
    """compose.yaml with compose.gpu.yaml over it, as docker compose sees them with the .env of
    .env.example (whose COMPOSE_FILE names these two)."""
    return merge(interpolate(load_compose(COMPOSE), example_env), interpolate(load_compose(COMPOSE_GPU), example_env))


@pytest.fixture(scope="module")
def cpu(example_env) -> dict:
    """compose.yaml with compose.cpu.yaml over it."""
    return merge(interpolate(load_compose(COMPOSE), example_env), interpolate(load_compose(COMPOSE_CPU), example_env))


def published_ports(service: dict) -> list[tuple[str, int, int]]:
    """(address, host port, container port) of each published port of a short-syntax ports list."""
    ports = []
    for port in service.get("ports", []):
        parts = str(port).split(":")
        assert len(parts) == 3, f"publish as ADDRESS:HOST:CONTAINER: {port}"
        ports.append((parts[0], int(parts[1]), int(parts[2].split("/")[0])))
    return ports


# --- the Compose Specification -----------------------------------------------------------------


def test_schema_is_the_compose_specification(schema):
    assert schema["title"] == "Compose Specification"
    assert "Apache License" in (SCHEMA.parent / "compose-spec.LICENSE").read_text()
    assert "compose-spec/compose-spec" in (SCHEMA.parent / "README.md").read_text()


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_GPU, COMPOSE_CPU], ids=lambda p: p.name)
def test_files_validate_as_written(schema, path):
    jsonschema.Draft7Validator(schema).validate(strip_tags(load_compose(path)))


def test_files_validate_as_docker_compose_reads_them(schema, gpu, cpu):
    jsonschema.Draft7Validator(schema).validate(strip_tags(gpu))
    jsonschema.Draft7Validator(schema).validate(cpu)


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_GPU, COMPOSE_CPU], ids=lambda p: p.name)
def test_files_stay_within_what_docker_compose_1_29_reads(path):
    """No top-level name (v2 only: -p or COMPOSE_PROJECT_NAME instead), no !reset/!override, no include."""
    document = load_compose(path)
    assert not {"name", "include", "version"} & set(document), set(document)
    code = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
    assert "!reset" not in code and "!override" not in code
    assert strip_tags(document) == document


def test_validation_catches_a_mistake(schema):
    """The schema is really applied: a misspelt key fails."""
    broken = load_compose(COMPOSE)
    broken["services"]["worker"]["healthchek"] = broken["services"]["worker"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(strip_tags(broken))


# --- the services and what they need --------------------------------------------------------------


def test_services(gpu):
    assert set(gpu["services"]) == SERVICES


def test_every_service_has_a_healthcheck(gpu):
    for name, service in gpu["services"].items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, (name, test)


def test_nothing_starts_before_what_it_needs_is_healthy(gpu):
    for name, service in gpu["services"].items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        assert set(depends) == NEEDS.get(name, set()), name
        for needed, condition in depends.items():
            assert condition == {"condition": "service_healthy"}, (name, needed)
            assert "healthcheck" in gpu["services"][needed]


def test_redis_keeps_queued_jobs_across_a_restart(gpu):
    redis = gpu["services"]["redis"]
    words = command_words(redis["command"])
    assert words[0] == "redis-server"
    assert words[words.index("--appendonly") + 1] == "yes"
    assert named_volume_at(gpu, redis, "/data")
    assert redis["image"].startswith("redis:") and redis["image"] != "redis:latest"


def test_redis_is_bounded_and_evicts_nothing(gpu, example_env):
    words = command_words(gpu["services"]["redis"]["command"])
    assert words[words.index("--maxmemory-policy") + 1] == "noeviction"
    assert words[words.index("--maxmemory") + 1] == example_env["REDIS_MAXMEMORY"] == "768mb"
    raw = command_words(load_compose(COMPOSE)["services"]["redis"]["command"])
    assert raw[raw.index("--maxmemory") + 1] == "${REDIS_MAXMEMORY:-768mb}", "a default without .env too"


def test_postgres_is_mlflows_store_on_a_named_volume(gpu):
    postgres = gpu["services"]["postgres"]
    assert postgres["image"].startswith("postgres:") and re.search(r":\d+", postgres["image"])
    assert named_volume_at(gpu, postgres, "/var/lib/postgresql/data")
    raw = load_compose(COMPOSE)["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", raw), "the password comes from .env, never a default"


def test_mlflow_serves_proxied_artifacts_from_postgres(gpu):
    mlflow, postgres = gpu["services"]["mlflow"], gpu["services"]["postgres"]
    store = urllib.parse.urlparse(env_value(mlflow, "MLFLOW_BACKEND_STORE_URI"))
    # The driver is named: SQLAlchemy's default for postgresql:// may not be the one in the lock.
    assert store.scheme == "postgresql+psycopg2" and "psycopg2-binary" in read_lock(ROOT / "requirements" / "lock.txt")
    assert store.hostname == "postgres" and store.port == 5432
    assert store.username == env_value(postgres, "POSTGRES_USER")
    assert store.password == env_value(postgres, "POSTGRES_PASSWORD")
    assert store.path.lstrip("/") == env_value(postgres, "POSTGRES_DB")
    assert named_volume_at(gpu, mlflow, env_value(mlflow, "MLFLOW_ARTIFACTS_DESTINATION"))
    assert "--serve-artifacts" in (ROOT / procfile()["mlflow"]).read_text()
    allowed = env_value(mlflow, "MLFLOW_ALLOWED_HOSTS").split(",")
    assert {"mlflow", f"mlflow:{env_value(mlflow, 'MLFLOW_PORT')}", "localhost"} <= set(allowed)


def test_the_apps_reach_redis_and_mlflow_by_service_name(gpu):
    mlflow_port = int(env_value(gpu["services"]["mlflow"], "MLFLOW_PORT"))
    for name in ("api", "worker", "flower"):
        service = gpu["services"][name]
        redis = urllib.parse.urlparse(env_value(service, "REDIS_URL"))
        assert (redis.scheme, redis.hostname, redis.port or 6379) == ("redis", "redis", 6379), name
        tracking = urllib.parse.urlparse(env_value(service, "MLFLOW_TRACKING_URI"))
        assert (tracking.hostname, tracking.port) == ("mlflow", mlflow_port), name
    # Run links point where people open the UI: the published MLflow port on this host.
    ui = urllib.parse.urlparse(env_value(gpu["services"]["api"], "MLFLOW_UI_URL"))
    assert ui.port == published_ports(gpu["services"]["mlflow"])[0][1]


def test_worker_takes_one_gpu_and_runs_one_job_on_it(gpu):
    """The GPU variant: compose.yaml's worker (TensorFlow with CUDA) with compose.gpu.yaml's reservation."""
    worker = gpu["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"] and devices[0]["count"] == 1
    assert env_value(worker, "WORKER_CONCURRENCY") == "1"
    assert worker["build"]["dockerfile"] == "docker/worker.Dockerfile"
    assert worker["build"]["args"]["TENSORFLOW"] == "gpu"


def test_workers_scale(gpu):
    """docker compose up --scale worker=3: nothing that names or binds one container only."""
    worker = gpu["services"]["worker"]
    assert not {"container_name", "ports", "hostname"} & set(worker)
    assert "--scale worker=" in (ROOT / "docs" / "compose.md").read_text()


def test_only_the_api_mlflow_ui_and_flower_are_published(gpu):
    published = {name: published_ports(service) for name, service in gpu["services"].items() if service.get("ports")}
    assert {name: [container for _, _, container in ports] for name, ports in published.items()} == {
        name: [port] for name, port in PUBLISHED.items()
    }
    assert {name: [host for _, host, _ in ports] for name, ports in published.items()} == {
        name: [port] for name, port in PUBLISHED.items()
    }, "with .env.example, the ports make run uses"
    # On this machine only, unless .env's PUBLISH_ADDRESS opens them.
    assert {address for ports in published.values() for address, _, _ in ports} == {"127.0.0.1"}
    raw = load_compose(COMPOSE)["services"]
    assert all(
        str(port).startswith("${PUBLISH_ADDRESS:-127.0.0.1}:") for name in PUBLISHED for port in raw[name]["ports"]
    )
    for name, port in PUBLISHED.items():  # and the server in the container listens there
        variable = {"api": "API_PORT", "mlflow": "MLFLOW_PORT", "flower": "FLOWER_PORT"}[name]
        assert env_value(gpu["services"][name], variable) == str(port)


def test_all_state_is_in_named_volumes(gpu):
    declared = set(gpu.get("volumes") or {})
    assert declared == {"redis-data", "postgres-data", "mlflow-artifacts"}
    for name, service in gpu["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            assert source in declared, f"{name}: {volume} is not a named volume"


def named_volume_at(model: dict, service: dict, target: str) -> bool:
    return any(
        str(v).split(":")[0] in (model.get("volumes") or {}) and str(v).split(":")[1] == target
        for v in service.get("volumes", [])
    )


# --- the same commands and environment as make run ------------------------------------------------


@pytest.mark.parametrize("role", sorted(procfile()))
def test_each_role_runs_the_procfile_script(gpu, role):
    """The container runs docker/bin/<role>, the very command make run starts (Procfile)."""
    service = gpu["services"][role]
    assert command_words(service["command"]) == shlex.split(procfile()[role])
    assert "entrypoint" not in service
    image_dockerfile = ROOT / service["build"]["dockerfile"]
    assert image_dockerfile in DOCKERFILES.values() and service["build"]["context"] == "."
    _, stages = parse_dockerfile(image_dockerfile)
    assert not stages[-1].all("ENTRYPOINT")


def test_flower_runs_on_the_api_image(gpu):
    api, flower = gpu["services"]["api"], gpu["services"]["flower"]
    assert flower["image"] == api["image"] and flower["build"] == api["build"]


def role_reads(role: str) -> tuple[set[str], set[str]]:
    """(what the role may read, what it cannot start without): its script and its settings."""
    script = script_variables(ROOT / procfile()[role])
    reads, required = set(script.read), set(script.required)
    settings = SETTINGS.get(role)
    if settings:
        prefix = settings.model_config.get("env_prefix", "").upper()
        fields = settings.model_fields
        reads |= {prefix + name.upper() for name in fields}
        required |= {prefix + name.upper() for name, info in fields.items() if info.is_required()}
    return reads, required


@pytest.mark.parametrize("role", sorted(procfile()))
def test_each_role_gets_the_environment_it_reads(gpu, role):
    given = env_names(gpu["services"][role])
    reads, required = role_reads(role)
    if role in ("api", "worker"):
        reads |= MLFLOW_CLIENT
    assert required <= given, f"{role} cannot start without {required - given}"
    assert given <= reads, f"{role} is given variables nothing in it reads: {given - reads}"
    # What make run (docker/bin/run-local) exports for the stack, compose gives the roles that read it.
    run_local = script_variables(ROOT / "docker" / "bin" / "run-local").exported - {"PATH"}
    assert run_local & reads <= given, f"make run sets {run_local & reads - given} for {role}; compose does not"


def test_the_healthchecks_are_the_images(gpu):
    for role, dockerfile in DOCKERFILES.items():
        _, stages = parse_dockerfile(dockerfile)
        image_check = stages[-1].last("HEALTHCHECK").args.split("CMD", 1)[1].strip()
        assert gpu["services"][role]["healthcheck"]["test"] == ["CMD", *json.loads(image_check)]
    assert gpu["services"]["flower"]["healthcheck"]["test"] == ["CMD", "python", "docker/healthcheck.py", "flower"]


# --- the CPU variant ------------------------------------------------------------------------------


def test_cpu_variant_builds_the_cpu_worker_without_a_gpu(gpu, cpu):
    worker = cpu["services"]["worker"]
    assert worker["build"]["args"]["TENSORFLOW"] == "cpu"
    assert worker["build"]["dockerfile"] == gpu["services"]["worker"]["build"]["dockerfile"]
    assert worker["image"] != gpu["services"]["worker"]["image"], "the two builds need two tags"
    assert not worker.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    # Without GPU memory to give back, a child keeps TensorFlow loaded between jobs; with one, never.
    assert str(env_value(worker, "WORKER_MAX_TASKS_PER_CHILD")) == "0"
    assert str(env_value(gpu["services"]["worker"], "WORKER_MAX_TASKS_PER_CHILD")) == "1"
    # Nothing else changes: the same command, environment, health check and dependencies.
    for key in ("command", "healthcheck", "depends_on"):
        assert worker[key] == gpu["services"]["worker"][key], key
    same_env = {k: v for k, v in worker["environment"].items() if k != "WORKER_MAX_TASKS_PER_CHILD"}
    assert same_env == {
        k: v for k, v in gpu["services"]["worker"]["environment"].items() if k != "WORKER_MAX_TASKS_PER_CHILD"
    }
    assert {k: v for k, v in cpu["services"].items() if k != "worker"} == {
        k: v for k, v in gpu["services"].items() if k != "worker"
    }


def test_the_gpu_reservation_is_a_file_of_its_own():
    """compose.yaml reserves no GPU and compose.gpu.yaml does only that: the CPU variant then needs no
    !reset to drop it (docker-compose 1.29 reads no such tag)."""
    assert "deploy" not in load_compose(COMPOSE)["services"]["worker"]
    gpu_file = load_compose(COMPOSE_GPU)
    assert set(gpu_file) == {"services"} and set(gpu_file["services"]) == {"worker"}
    assert set(gpu_file["services"]["worker"]) == {"deploy"}
    cpu_file = load_compose(COMPOSE_CPU)
    assert set(cpu_file) == {"services"} and set(cpu_file["services"]) == {"worker"}
    assert set(cpu_file["services"]["worker"]) == {"build", "image", "environment"}


def test_env_example_names_the_project(example_env):
    """As compose.yaml's top-level name did before: the same containers and volumes for plain docker compose."""
    assert example_env["COMPOSE_PROJECT_NAME"] == "echo-rnn"


def test_env_example_chooses_the_gpu_variant(example_env):
    """Plain docker compose reads COMPOSE_FILE from .env: the GPU by default, the CPU one line away."""
    assert example_env["COMPOSE_FILE"] == "compose.yaml:compose.gpu.yaml"
    assert re.search(r"^#.*COMPOSE_FILE=compose\.yaml:compose\.cpu\.yaml", ENV_EXAMPLE.read_text(), re.M)


# --- settings through .env ------------------------------------------------------------------------


def test_env_example_documents_every_variable_compose_reads(example_env):
    used = set().union(*(referenced_variables(load_compose(path)) for path in (COMPOSE, COMPOSE_GPU, COMPOSE_CPU)))
    assert used <= set(example_env), f"not in .env.example: {used - set(example_env)}"
    # Compose's own: which files it reads, and the project's name (the files name none).
    assert set(example_env) - {"COMPOSE_FILE", "COMPOSE_PROJECT_NAME"} <= used, (
        f"set in .env.example, read by nothing: {set(example_env) - used}"
    )


def test_required_settings_fail_early_without_env():
    required = required_variables(load_compose(COMPOSE))
    assert required == SECRETS
    with pytest.raises(MissingVariable):
        interpolate(load_compose(COMPOSE), {})
    for missing in SECRETS:
        with pytest.raises(MissingVariable, match=missing):
            interpolate(load_compose(COMPOSE), dict.fromkeys(SECRETS - {missing}, "x"))


def test_env_example_has_a_placeholder_for_every_secret(example_env):
    assert {name for name, value in example_env.items() if value == PLACEHOLDER} == SECRETS


def start_script(role: str, **env: str) -> subprocess.CompletedProcess:
    """docker/bin/<role> with only the given environment (and PATH): it must stop before starting anything."""
    return subprocess.run(
        [str(DOCKER / "bin" / role)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
    )


@pytest.mark.parametrize(
    ("role", "env", "named"),
    [
        (
            "mlflow",
            {
                "MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://mlflow:change-me@postgres:5432/mlflow",
                "MLFLOW_ARTIFACTS_DESTINATION": "/tmp/nowhere",
            },
            "POSTGRES_PASSWORD",
        ),
        (
            "mlflow",
            {
                "MLFLOW_BACKEND_STORE_URI": "sqlite:////tmp/nowhere.db",
                "MLFLOW_ARTIFACTS_DESTINATION": "/tmp/nowhere",
                "MLFLOW_AUTH_ADMIN_PASSWORD": "change-me",
                "MLFLOW_SERVICE_PASSWORD": "a-real-password-1",
            },
            "MLFLOW_ADMIN_PASSWORD",
        ),
        (
            "mlflow",
            {
                "MLFLOW_BACKEND_STORE_URI": "sqlite:////tmp/nowhere.db",
                "MLFLOW_ARTIFACTS_DESTINATION": "/tmp/nowhere",
                "MLFLOW_AUTH_ADMIN_PASSWORD": "a-real-password-1",
                "MLFLOW_SERVICE_PASSWORD": "change-me",
            },
            "MLFLOW_SERVICE_PASSWORD",
        ),
        ("api", {"MLFLOW_TRACKING_PASSWORD": "change-me"}, "MLFLOW_SERVICE_PASSWORD"),
        ("worker", {"MLFLOW_TRACKING_PASSWORD": "change-me"}, "MLFLOW_SERVICE_PASSWORD"),
        ("flower", {"FLOWER_PASSWORD": "change-me", "REDIS_URL": "redis://127.0.0.1:9/0"}, "FLOWER_PASSWORD"),
    ],
    ids=["postgres", "mlflow-admin", "mlflow-service", "api", "worker", "flower"],
)
def test_start_scripts_refuse_the_placeholders(role, env, named):
    """Compose's ${VAR:?} lets a value through that is still .env.example's placeholder: the scripts don't."""
    result = start_script(role, **env)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"{named} is still .env.example's placeholder" in result.stderr, result.stderr
    assert "choose your own in .env" in result.stderr


def test_the_mlflow_login_is_on_and_the_apps_use_the_service_account(gpu):
    mlflow = gpu["services"]["mlflow"]
    raw = load_compose(COMPOSE)["services"]
    assert re.fullmatch(
        r"\$\{MLFLOW_ADMIN_PASSWORD:\?[^}]+\}", raw["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"]
    )
    assert "--app-name basic-auth" in (DOCKER / "bin" / "mlflow").read_text()
    for name in ("api", "worker"):
        service = gpu["services"][name]
        assert env_value(service, "MLFLOW_TRACKING_USERNAME") == env_value(mlflow, "MLFLOW_SERVICE_USERNAME")
        assert env_value(service, "MLFLOW_TRACKING_PASSWORD") == env_value(mlflow, "MLFLOW_SERVICE_PASSWORD")
    for name, service in gpu["services"].items():
        has = env_names(service)
        assert ("MLFLOW_TRACKING_PASSWORD" in has) == (name in ("api", "worker")), name
        assert ("MLFLOW_AUTH_ADMIN_PASSWORD" in has) == (name == "mlflow"), name
        assert ("FLOWER_PASSWORD" in has) == (name == "flower"), name
    assert env_value(mlflow, "MLFLOW_SERVICE_USERNAME") != env_value(mlflow, "MLFLOW_AUTH_ADMIN_USERNAME")


@pytest.mark.parametrize(
    ("role", "variable"), [("api", "API_HOST"), ("mlflow", "MLFLOW_HOST"), ("flower", "FLOWER_HOST")]
)
def test_servers_listen_on_127_0_0_1_unless_told_and_compose_tells_them(gpu, role, variable):
    """make run keeps everything on this machine; inside a container the server must listen on all its interfaces."""
    assert f'"${{{variable}:-127.0.0.1}}"' in (DOCKER / "bin" / role).read_text()
    assert env_value(gpu["services"][role], variable) == "0.0.0.0"


def test_workers_stop_after_a_last_checkpoint(gpu):
    """docker stop: the running job trains on (checkpoints every 2 s) before SIGKILL."""
    grace = gpu["services"]["worker"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) >= 10, grace


def test_the_api_and_only_the_api_gets_tokens(gpu, example_env):
    """compose.yaml sets the API's tokens from .env; the workers and Flower never see them."""
    raw = load_compose(COMPOSE)["services"]["api"]["environment"]["API_TOKENS"]
    assert re.fullmatch(r"\$\{API_TOKENS:\?[^}]+\}", raw), "the tokens come from .env, never a default"
    for name, service in gpu["services"].items():
        assert ("API_TOKENS" in env_names(service)) == (name == "api"), name
    # .env.example's placeholder is refused: nobody runs the API with a token everyone knows.
    with pytest.raises(ValueError, match="generate one"):
        Settings(
            redis_url="redis://redis:6379/0",
            mlflow_tracking_uri="http://mlflow:5000",
            api_tokens=env_value(gpu["services"]["api"], "API_TOKENS"),
        )
    # The limits compose sets are ones the settings accept.
    api = gpu["services"]["api"]
    Settings(
        redis_url="redis://redis:6379/0",
        mlflow_tracking_uri="http://mlflow:5000",
        rate_limit_jobs=env_value(api, "RATE_LIMIT_JOBS"),
        rate_limit_predict=env_value(api, "RATE_LIMIT_PREDICT"),
        predict_requires_token=env_value(api, "PREDICT_REQUIRES_TOKEN"),
    )


def test_env_file_stays_out_of_git():
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_the_docs_document_the_deployment():
    page = (ROOT / "docs" / "compose.md").read_text()
    assert "docs/compose.md" in (ROOT / "README.md").read_text()
    for needed in (
        "docker compose up",
        "compose.cpu.yaml",
        "compose.gpu.yaml",
        "--scale worker=3",
        "cp .env.example .env",
        "localhost:8000",
        "localhost:5000",
        "localhost:5555",
        "docker-compose 1.29",
        "make test-containers",
        "MLFLOW_ADMIN_PASSWORD",
        "FLOWER_PASSWORD",
        "PUBLISH_ADDRESS",
    ):
        assert needed in page, f"docs/compose.md does not mention {needed}"
