"""The compose files as the Compose installed here reads them (docker-compose 1.29 here, or v2): the GPU
variant, which this machine cannot start (no NVIDIA runtime), and the CPU variant the stack runs."""

import re

import pytest

from tests.containers.compose import ComposeStack
from tests.support import ROOT

pytestmark = pytest.mark.containers
GPU = ("compose.yaml", "compose.gpu.yaml")
CPU = ("compose.yaml", "compose.cpu.yaml")


@pytest.fixture(scope="module")
def unstarted(tmp_path_factory) -> ComposeStack:
    """A project that is never started: only its configuration is read."""
    return ComposeStack(tmp_path_factory.mktemp("compose-config"))


def test_the_gpu_variant_reserves_one_nvidia_gpu_per_worker(unstarted):
    worker = unstarted.config(GPU)["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["build"]["args"]["TENSORFLOW"] == "gpu" and worker["image"] == "echo-rnn/worker:gpu"
    assert str(worker["environment"]["WORKER_MAX_TASKS_PER_CHILD"]) == "1"


def test_env_example_makes_the_gpu_variant_the_default(unstarted):
    """Plain docker compose (no -f) with .env.example's COMPOSE_FILE: the GPU variant."""
    shipped = [line for line in (ROOT / ".env.example").read_text().splitlines() if line.startswith("COMPOSE_FILE=")]
    assert shipped == ["COMPOSE_FILE=" + ":".join(GPU)]
    text = unstarted.env_file.read_text()
    unstarted.env_file.write_text(re.sub(r"^COMPOSE_FILE=.*$", shipped[0], text, flags=re.M))
    try:
        worker = unstarted.config(files=())["services"]["worker"]
    finally:
        unstarted.env_file.write_text(text)
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"


def test_the_cpu_variant_has_no_reservation(unstarted):
    worker = unstarted.config(CPU)["services"]["worker"]
    assert not worker.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    assert worker["build"]["args"]["TENSORFLOW"] == "cpu" and worker["image"] == "echo-rnn/worker:cpu"
    assert str(worker["environment"]["WORKER_MAX_TASKS_PER_CHILD"]) == "0"


def test_compose_refuses_to_start_without_the_secrets(unstarted):
    """${VAR:?}: a .env without a password stops Compose before anything runs."""
    text = unstarted.env_file.read_text()
    unstarted.env_file.write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("MLFLOW_ADMIN_PASSWORD="))
    )
    try:
        result = unstarted.compose("config", check=False, files=CPU)
        assert result.returncode != 0 and "MLFLOW_ADMIN_PASSWORD" in result.stdout + result.stderr
    finally:
        unstarted.env_file.write_text(text)
