"""The compose stack, built and brought up once for the module that asks for it, and taken down with
its volumes at the end (docker compose down -v); on a failure, the last 200 log lines of every
service are printed before that. make test-containers runs these tests; make test leaves them out
(pyproject.toml: -m "not containers")."""

import json
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.containers.compose import IMAGES, SERVICES, ComposeStack, image_size
from tests.support import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "containers"


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def compose_stack(request, tmp_path_factory) -> Iterator[ComposeStack]:
    if not engine_answers():
        pytest.fail("no Docker engine answers: make test-containers starts one (../shared/containers/docker-up.sh)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "up.log").unlink(missing_ok=True)
    stack = ComposeStack(tmp_path_factory.mktemp("compose"))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    figures = stack.figures
    figures["compose"] = " ".join(stack.command)
    failed_before = request.session.testsfailed
    up = False

    def interrupted(signum, frame):  # CI cancelling the job: still take the stack down below
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        started = time.monotonic()
        stack.compose("build", "mlflow", "api", "worker", log=ARTIFACTS / "build.log", timeout=1800)
        figures["build_s"] = round(time.monotonic() - started, 1)
        figures["image_bytes"] = {role: image_size(tag) for role, tag in IMAGES.items()}
        started = time.monotonic()
        starting = stack.start("up", "-d", "--no-build", log=ARTIFACTS / "up.log")
        try:
            healthy = stack.wait_healthy(timeout=420, starting=starting)
        finally:
            if starting.wait(timeout=120):
                raise AssertionError(f"compose up failed:\n{(ARTIFACTS / 'up.log').read_text()[-3000:]}")
        figures["container_start_to_healthy_s"] = {k: round(v, 1) for k, v in healthy.items()}
        figures["up_to_all_healthy_s"] = round(time.monotonic() - started, 1)
        up = True
        yield stack
    finally:
        failed = not up or request.session.testsfailed > failed_before
        for service in SERVICES:
            (ARTIFACTS / f"{service}.log").write_text(stack.logs(service))
        if failed:
            for service in SERVICES:
                reporter.write_line(f"----- {service}: the last 200 log lines", bold=True)
                reporter.write_line(stack.logs(service, tail=200))
        started = time.monotonic()
        stack.compose("down", "-v", "--remove-orphans", check=False, timeout=300)
        figures["down_s"] = round(time.monotonic() - started, 1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        (ARTIFACTS / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
        reporter.write_line("----- containers: figures (test-artifacts/containers/figures.json)", bold=True)
        reporter.write_line(json.dumps(figures, indent=2))
