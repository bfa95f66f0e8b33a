"""docker/*.Dockerfile: hadolint-clean, multi-stage, non-root, with health checks, installing from
the locks CI installs, running the docker/bin scripts the Procfile names; and the build context."""

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.docker.parsing import (
    DOCKER,
    DOCKERFILES,
    arg_defaults,
    copy_sources,
    dockerignore_rules,
    env_keys,
    exec_form,
    is_ignored,
    parse_dockerfile,
    procfile,
)
from tests.docker.test_locks import pyproject
from tests.support import ROOT, RedisServer, free_port, wait_for

HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
LOCKS = ("requirements/lock.txt", "requirements/gpu.txt")
# The extra each image installs ("" for none): the API's ONNX Runtime, the worker's TensorFlow.
EXTRAS = {"api": "api", "worker": '"$TENSORFLOW"', "mlflow": ""}
SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|API_KEY|PRIVATE", re.IGNORECASE)


def makefile_uv_version() -> str:
    return re.search(r"^UV_VERSION\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)[1]


def test_one_dockerfile_per_role():
    assert sorted(p.name for p in DOCKER.glob("*Dockerfile*")) == sorted(p.name for p in DOCKERFILES.values())
    assert set(DOCKERFILES) <= set(procfile()), "every image runs a role of the Procfile"


@pytest.mark.parametrize("role", DOCKERFILES)
def test_hadolint_finds_nothing(role):
    result = subprocess.run(
        [str(HADOLINT), "--config", str(ROOT / ".hadolint.yaml"), "--format", "json", str(DOCKERFILES[role])],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_config_ignores_nothing_silently():
    config = (ROOT / ".hadolint.yaml").read_text()
    assert re.search(r"^failure-threshold:\s*(style|info)\s*$", config, re.M), "every finding must fail"
    assert not re.search(r"^ignored\s*:", config, re.M), "ignore rules inline, with the reason beside them"


@pytest.mark.parametrize("role", DOCKERFILES)
def test_every_ignored_rule_says_why(role):
    lines = DOCKERFILES[role].read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+(global\s+)?ignore=", line):
            before = lines[number - 1].strip() if number else ""
            assert before.startswith("#") and "hadolint" not in before and len(before) > 10, (
                f"{DOCKERFILES[role].name}:{number + 1}: say why above the ignore pragma"
            )


@pytest.mark.parametrize("role", DOCKERFILES)
def test_multi_stage_non_root_healthy_image(role):
    _instructions, stages = parse_dockerfile(DOCKERFILES[role])
    assert len(stages) >= 2 and stages[0].name == "builder", "build in a stage of its own"
    final = stages[-1]
    for stage in stages:
        assert re.fullmatch(r"python:3\.11-slim-\w+", stage.base), stage.base
    # Only the built environment is taken from the builder: no uv, no build tools, no sources.
    copies_from_builder = [i for i in final.all("COPY") if "--from=builder" in i.args]
    assert [shlex.split(i.args)[1:] for i in copies_from_builder] == [["/opt/venv", "/opt/venv"]]
    assert not [i for i in final.all("RUN") if "pip" in i.args], "installs belong in the builder"
    user = final.last("USER")
    assert user, "the image must not run as root"
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"a numeric non-root user, not {user.args!r}"
    assert final.instructions[-1].keyword == "CMD" and final.instructions.index(user) < len(final.instructions) - 1
    health = final.last("HEALTHCHECK")
    assert health, "HEALTHCHECK missing"
    command = exec_form(health.args.split("CMD", 1)[1].strip())
    assert command == ["python", "docker/healthcheck.py", role]


@pytest.mark.parametrize("role", DOCKERFILES)
def test_runs_the_procfile_script(role):
    """The container starts what make run starts for the role: docker/bin/<role> from WORKDIR /app."""
    _, stages = parse_dockerfile(DOCKERFILES[role])
    final = stages[-1]
    assert exec_form(final.last("CMD").args) == shlex.split(procfile()[role])
    assert not final.all("ENTRYPOINT"), "the Procfile's command runs as is"
    assert final.last("WORKDIR").args == "/app"
    copied = {(*copy_sources(i), shlex.split(i.args)[-1]) for i in final.all("COPY")}
    assert ("docker/bin/", "docker/bin/") in copied, "docker/bin must land in /app/docker/bin"
    assert ("docker/healthcheck.py", "docker/") in copied
    script = ROOT / procfile()[role]
    for needed in re.findall(r"\$here/\.\./([\w.-]+)", script.read_text()):  # files the script names beside it
        assert (f"docker/{needed}", "docker/") in copied, f"the {role} image lacks docker/{needed}"
    assert script.is_file() and os.access(script, os.X_OK), f"{script} must be executable (git keeps the mode)"
    env = {k for i in final.all("ENV") for k in env_keys(i)}
    assert "PATH" in env and "/opt/venv/bin" in " ".join(i.args for i in final.all("ENV"))


@pytest.mark.parametrize("role", DOCKERFILES)
def test_installs_from_the_locks_ci_uses(role):
    instructions, stages = parse_dockerfile(DOCKERFILES[role])
    runs = [i.args for i in instructions if i.keyword == "RUN"]
    args = arg_defaults(instructions)
    # The only package named in a Dockerfile is uv itself, at the Makefile's version.
    pip_installs = [r for r in runs if re.search(r"\bpip install\b", r) and "uv pip" not in r]
    assert len(pip_installs) == 1 and re.search(r'pip install --no-cache-dir "?uv==\$\{UV_VERSION\}"?', pip_installs[0])
    assert args["UV_VERSION"] == makefile_uv_version()
    # Dependencies: pyproject.toml's, for the image's TensorFlow extra (the MLflow image: its server
    # extra only, read from pyproject.toml), every version from the locks.
    source = "-r server.txt" if role == "mlflow" else "-r pyproject.toml"
    dependency_installs = [r for r in runs if "uv pip install" in r and source in r]
    assert len(dependency_installs) == 1, runs
    install = dependency_installs[0]
    if role == "mlflow":
        assert '["optional-dependencies"]["server"]' in install and "> server.txt" in install
    for lock in LOCKS:
        assert f"--constraint {lock}" in install, f"{role}: not pinned by {lock}"
    extra = re.findall(r"--extra (\S+)", install)
    assert extra == ([EXTRAS[role]] if EXTRAS[role] else []), install
    assert not re.search(r"uv pip install[^&;]*\s(?!-)[a-z][\w.-]*[=<>]=", install), (
        "no package pinned beside the locks"
    )
    copied = {s for i in stages[0].all("COPY") for s in copy_sources(i)}
    assert {"pyproject.toml", "requirements/"} <= copied
    # The project itself goes in without resolving anything more, built with the lock's setuptools.
    project_installs = [r for r in runs if "uv pip install" in r and source not in r]
    if role == "mlflow":
        assert project_installs == [], "the MLflow image needs no project code"
    else:
        assert len(project_installs) == 1 and "--no-deps" in project_installs[0]
        assert project_installs[0].rstrip().endswith(" .")
        assert "--build-constraint requirements/lock.txt" in project_installs[0]


@pytest.mark.parametrize("role", ["api", "worker"])
def test_images_leave_out_what_nothing_runs(role):
    """MLflow's client only (mlflow-skinny, from pyproject's dependencies; the server is the server
    extra), no test suites, and in the worker no C++ headers nor libclang library; bytecode for what
    the role imports."""
    instructions, _ = parse_dockerfile(DOCKERFILES[role])
    install = next(i.args for i in instructions if i.keyword == "RUN" and "-r pyproject.toml" in i.args)
    assert "--extra server" not in install
    left_outs = ["-name tests -prune -exec rm -rf"] + (
        ['"$site/tensorflow/include"', '"$site/clang/native"'] if role == "worker" else []
    )
    for left_out in left_outs:
        assert left_out in install, left_out
    env = " ".join(i.args for i in instructions if i.keyword == "ENV")
    assert "UV_COMPILE_BYTECODE" not in env, "bytecode is written by the warm-up import, not for every package"
    imported = "import onnxruntime" if role == "api" else "import tensorflow"
    warm = next(i.args for i in instructions if i.keyword == "RUN" and "python -c" in i.args and imported in i.args)
    assert f"{'service' if role == 'api' else 'worker'}." in warm and "compileall" in warm


def test_worker_image_is_gpu_by_default_and_cpu_on_request():
    instructions, _ = parse_dockerfile(DOCKERFILES["worker"])
    assert arg_defaults(instructions)["TENSORFLOW"] == "gpu"
    install = next(i.args for i in instructions if i.keyword == "RUN" and "--extra" in i.args)
    assert re.search(r'case "\$TENSORFLOW" in cpu\|gpu\) ;; \*\).*exit 1', install), "reject an unknown build"
    env = " ".join(i.args for i in instructions if i.keyword == "ENV")
    assert "WORKER_CONCURRENCY=1" in env, "one job per GPU by default"


def test_api_image_has_neither_tensorflow_nor_cuda():
    instructions, _ = parse_dockerfile(DOCKERFILES["api"])
    install = next(i.args for i in instructions if i.keyword == "RUN" and "--extra" in i.args)
    assert re.findall(r"--extra (\S+)", install) == ["api"]
    extras = pyproject()["optional-dependencies"]
    assert not [r for r in extras["api"] if "tensorflow" in r] and "onnxruntime" in " ".join(extras["api"])
    assert not {"cpu", "gpu"} & set(re.findall(r"--extra (\S+)", " ".join(i.args for i in instructions)))


@pytest.mark.parametrize("role", DOCKERFILES)
def test_no_secret_baked_in(role):
    instructions, _ = parse_dockerfile(DOCKERFILES[role])
    for instruction in instructions:
        if instruction.keyword == "ENV":
            assert not [k for k in env_keys(instruction) if SECRET.search(k)], instruction
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", instruction.args), f"a URL with a password: {instruction}"
        if instruction.keyword == "ARG":
            assert not SECRET.search(instruction.args.split("=")[0]), instruction
        if instruction.keyword == "COPY":
            assert not [s for s in copy_sources(instruction) if ".env" in s or "secret" in s.lower()]


def test_build_context_takes_only_what_the_dockerfiles_copy():
    rules = dockerignore_rules(ROOT / ".dockerignore")
    assert rules[0][2] == "*", "an allowlist: everything out first"
    for path in DOCKERFILES.values():
        instructions, _ = parse_dockerfile(path)
        for instruction in instructions:
            for source in copy_sources(instruction) if instruction.keyword == "COPY" else []:
                assert (ROOT / source).exists(), f"{path.name} copies {source}, which does not exist"
                files = (
                    [source]
                    if (ROOT / source).is_file()
                    else [
                        str(f.relative_to(ROOT))
                        for f in (ROOT / source).rglob("*")
                        if f.is_file() and "__pycache__" not in f.parts
                    ]
                )
                assert files, source
                left_out = [f for f in files if is_ignored(rules, f)]
                assert not left_out, f"{path.name} copies {source}, but .dockerignore leaves out {left_out}"
    for source in ("service/app.py", "worker/celery_app.py", "docker/bin/worker", "requirements/gpu.txt"):
        assert not is_ignored(rules, source), source
    for left_out in (
        ".env",
        ".venv/bin/python",
        ".git/HEAD",
        ".data/mlflow.db",
        "mlflow.db",
        "tests/conftest.py",
        "test-artifacts/stack.log",
        "service/__pycache__/app.cpython-311.pyc",
        "compose.yaml",
        "docker/api.Dockerfile",
        "bench/train_speed.py",
        "mlruns/0/meta.yaml",
    ):
        assert is_ignored(rules, left_out), f"{left_out} would be sent to the build"


# --- docker/healthcheck.py, what every HEALTHCHECK runs ---------------------------------------


def healthcheck(role: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py"), role],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


@pytest.fixture
def http_server() -> Iterator[tuple[int, dict]]:
    """A local server answering 200 on the paths in the dict it yields, 503 elsewhere."""
    paths: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(paths.get(self.path, 503))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], paths
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("role", "variable", "path"),
    [
        ("api", "API_PORT", "/healthz"),
        ("mlflow", "MLFLOW_PORT", "/health"),
        ("flower", "FLOWER_PORT", "/healthcheck"),
    ],
)
def test_http_healthchecks(http_server, role, variable, path):
    port, paths = http_server
    assert healthcheck(role, **{variable: str(port)}).returncode == 1, "unhealthy while the path fails"
    paths[path] = 200
    assert healthcheck(role, **{variable: str(port)}).returncode == 0
    assert healthcheck(role, **{variable: str(free_port())}).returncode == 1, "unhealthy when nothing listens"


def test_healthcheck_refuses_an_unknown_role():
    assert healthcheck("redis").returncode == 2


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisServer]:
    """A Redis of this test's own: its worker must not take the suite's queued jobs (nor its pings)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_worker_healthcheck_pings_this_containers_node(own_redis, tmp_path):
    """Healthy once docker/bin/worker's node (WORKER_NAME@host) answers; another node's name is not."""
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "REDIS_URL": own_redis.url,
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "WORKER_NAME": "health",
        "WORKER_CONCURRENCY": "1",
    }
    settings = {k: env[k] for k in ("REDIS_URL", "MLFLOW_TRACKING_URI", "WORKER_NAME")}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [str(DOCKER / "bin" / "worker")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: b"ready." in log_path.read_bytes(), 90, "the worker", 0.5)
        assert healthcheck("worker", **settings).returncode == 0, log_path.read_text(errors="replace")[-2000:]
        # Another container's node name gets no answer: unhealthy (as with no worker at all).
        assert healthcheck("worker", **{**settings, "WORKER_NAME": "someone-else"}).returncode == 1
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@pytest.mark.parametrize("role", DOCKERFILES)
def test_the_modules_an_image_imports_at_build_exist(role):
    """The build's import check (it warms the bytecode) names only modules of this tree that exist: a rename
    left out of a Dockerfile fails here, not in make test-containers' build."""
    text = DOCKERFILES[role].read_text()
    named = [m.strip() for found in re.findall(r"'import ([^';]+)'", text) for m in found.split(",")]
    ours = [m for m in named if m.split(".")[0] in {"contract", "service", "worker"}]
    missing = [m for m in ours if not (ROOT / (m.replace(".", "/") + ".py")).exists()]
    assert missing == [], f"{DOCKERFILES[role].name} imports modules this tree lacks: {missing}"
