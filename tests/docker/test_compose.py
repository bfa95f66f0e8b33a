"""compose.yaml and compose.cpu.yaml: valid Compose files that bring up the whole service as make run
does (the same docker/bin scripts, the same environment), on production parts."""

import json
import re
import shlex
import urllib.parse

import jsonschema
import pytest

from service.settings import Settings
from tests.docker.parsing import (
    COMPOSE, COMPOSE_CPU, DOCKERFILES, ENV_EXAMPLE, SCHEMA, MissingVariable, command_words, env_names, env_value,
    interpolate, load_compose, merge, parse_dockerfile, procfile, read_env_file, read_lock, referenced_variables,
    required_variables, script_variables, strip_tags,
)
from tests.support import ROOT
from worker.settings import WorkerSettings

SERVICES = {"redis", "postgres", "mlflow", "api", "worker", "flower"}
PUBLISHED = {"api": 8000, "mlflow": 5000, "flower": 5555}
NEEDS = {"mlflow": {"postgres"}, "api": {"redis", "mlflow"}, "worker": {"redis", "mlflow"}, "flower": {"redis"}}
# The settings class each role's Python process reads its environment through.
SETTINGS = {"api": Settings, "worker": WorkerSettings, "flower": WorkerSettings}


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA.read_text())


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def gpu(example_env) -> dict:
    """compose.yaml as docker compose sees it with the .env of .env.example."""
    return interpolate(load_compose(COMPOSE), example_env)


@pytest.fixture(scope="module")
def cpu(example_env) -> dict:
    """compose.yaml with compose.cpu.yaml over it."""
    return merge(interpolate(load_compose(COMPOSE), example_env), interpolate(load_compose(COMPOSE_CPU), example_env))


def published_ports(service: dict) -> list[tuple[int, int]]:
    """(host, container) of each published port of a short-syntax ports list."""
    ports = []
    for port in service.get("ports", []):
        parts = str(port).split(":")
        assert len(parts) == 2, f"publish as HOST:CONTAINER: {port}"
        ports.append((int(parts[0]), int(parts[1].split("/")[0])))
    return ports


# --- the Compose Specification -----------------------------------------------------------------

def test_schema_is_the_compose_specification(schema):
    assert schema["title"] == "Compose Specification"
    assert "Apache License" in (SCHEMA.parent / "compose-spec.LICENSE").read_text()
    assert "compose-spec/compose-spec" in (SCHEMA.parent / "README.md").read_text()


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_CPU], ids=lambda p: p.name)
def test_files_validate_as_written(schema, path):
    jsonschema.Draft7Validator(schema).validate(strip_tags(load_compose(path)))


def test_files_validate_as_docker_compose_reads_them(schema, gpu, cpu):
    jsonschema.Draft7Validator(schema).validate(strip_tags(gpu))
    jsonschema.Draft7Validator(schema).validate(cpu)


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
    assert ui.port == published_ports(gpu["services"]["mlflow"])[0][0]


def test_worker_takes_one_gpu_and_runs_one_job_on_it(gpu):
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
    assert "--scale worker=" in (ROOT / "README.md").read_text()


def test_only_the_api_mlflow_ui_and_flower_are_published(gpu):
    published = {name: published_ports(service) for name, service in gpu["services"].items() if service.get("ports")}
    assert {name: [container for _, container in ports] for name, ports in published.items()} == {
        name: [port] for name, port in PUBLISHED.items()}
    assert {name: [host for host, _ in ports] for name, ports in published.items()} == {
        name: [port] for name, port in PUBLISHED.items()}, "with .env.example, the ports make run uses"
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
    return any(str(v).split(":")[0] in (model.get("volumes") or {}) and str(v).split(":")[1] == target
               for v in service.get("volumes", []))


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
    assert same_env == {k: v for k, v in gpu["services"]["worker"]["environment"].items() if k != "WORKER_MAX_TASKS_PER_CHILD"}
    assert {k: v for k, v in cpu["services"].items() if k != "worker"} == {
        k: v for k, v in gpu["services"].items() if k != "worker"}


def test_cpu_variant_resets_the_reservation_rather_than_adding_to_it():
    """A plain devices: [] would merge with compose.yaml's list; !reset drops it."""
    override = load_compose(COMPOSE_CPU)
    devices = override["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert type(devices).__name__ == "Reset"
    assert set(override) == {"services"} and set(override["services"]) == {"worker"}


# --- settings through .env ------------------------------------------------------------------------

def test_env_example_documents_every_variable_compose_reads(example_env):
    used = referenced_variables(load_compose(COMPOSE)) | referenced_variables(load_compose(COMPOSE_CPU))
    assert used <= set(example_env), f"not in .env.example: {used - set(example_env)}"
    assert set(example_env) <= used, f"set in .env.example, read by nothing: {set(example_env) - used}"
    commented = re.findall(r"^#\s*([A-Z_]+)=", ENV_EXAMPLE.read_text(), re.M)
    assert commented == ["COMPOSE_FILE"], "the CPU variant, one uncomment away"


def test_required_settings_fail_early_without_env():
    required = required_variables(load_compose(COMPOSE))
    assert required == {"POSTGRES_PASSWORD", "API_TOKENS"}
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(load_compose(COMPOSE), {})
    with pytest.raises(MissingVariable, match="API_TOKENS"):
        interpolate(load_compose(COMPOSE), {"POSTGRES_PASSWORD": "x"})


def test_the_api_and_only_the_api_gets_tokens(gpu, example_env):
    """compose.yaml sets the API's tokens from .env; the workers and Flower never see them."""
    raw = load_compose(COMPOSE)["services"]["api"]["environment"]["API_TOKENS"]
    assert re.fullmatch(r"\$\{API_TOKENS:\?[^}]+\}", raw), "the tokens come from .env, never a default"
    for name, service in gpu["services"].items():
        assert ("API_TOKENS" in env_names(service)) == (name == "api"), name
    # .env.example's placeholder is refused: nobody runs the API with a token everyone knows.
    with pytest.raises(ValueError, match="generate one"):
        Settings(redis_url="redis://redis:6379/0", mlflow_tracking_uri="http://mlflow:5000",
                 api_tokens=env_value(gpu["services"]["api"], "API_TOKENS"))
    # The limits compose sets are ones the settings accept.
    api = gpu["services"]["api"]
    Settings(redis_url="redis://redis:6379/0", mlflow_tracking_uri="http://mlflow:5000",
             rate_limit_jobs=env_value(api, "RATE_LIMIT_JOBS"), rate_limit_predict=env_value(api, "RATE_LIMIT_PREDICT"),
             predict_requires_token=env_value(api, "PREDICT_REQUIRES_TOKEN"))


def test_env_file_stays_out_of_git():
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_readme_documents_the_deployment():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploy with Docker Compose"):]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    for needed in ("docker compose up", "compose.cpu.yaml", "--scale worker=3", "cp .env.example .env",
                   "localhost:8000", "localhost:5000", "localhost:5555"):
        assert needed in section, f"README's Docker section does not mention {needed}"
