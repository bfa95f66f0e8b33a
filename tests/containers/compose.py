"""The compose stack of the project, driven as a user drives it: the project's own compose files, a
.env made from .env.example with generated secrets, its own project name and free ports on 127.0.0.1.

Works with docker-compose 1.29 (what ../shared/containers/docker-up.sh installs) and Compose v2.
Nothing of a user's is touched: no .env is read or written in the repository (--env-file), the
containers, network and volumes carry the project name, and the variables of this process never
reach Compose's interpolation (it runs with a bare environment).
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from tests.support import ROOT, free_port

SHARED = ROOT.parent / "shared" / "containers"
SERVICES = ("redis", "postgres", "mlflow", "api", "worker", "flower")
# The CPU variant: this machine has no NVIDIA runtime.
FILES = ("compose.yaml", "compose.cpu.yaml")
IMAGES = {"api": "echo-rnn/api:latest", "worker": "echo-rnn/worker:cpu", "mlflow": "echo-rnn/mlflow:latest"}
# Passed through to Compose: where the engine is, nothing that could change what the files say.
ENGINE_ENV = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "TMPDIR")


def compose_command() -> list[str]:
    """Compose v2 (docker compose) where it is installed, else docker-compose (1.29 here)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("no Docker Compose: run ../shared/containers/docker-up.sh or install Compose")


def secret() -> str:
    return secrets.token_urlsafe(24)


def env_file_from_example(path: Path, ports: dict[str, int], project: str) -> dict[str, str]:
    """.env.example with every change-me replaced by a fresh secret, and the project and ports of this run."""
    values = {
        "COMPOSE_PROJECT_NAME": project,
        "API_PORT": str(ports["api"]),
        "MLFLOW_PORT": str(ports["mlflow"]),
        "FLOWER_PORT": str(ports["flower"]),
        "PUBLISH_ADDRESS": "127.0.0.1",
        "MLFLOW_UI_URL": f"http://127.0.0.1:{ports['mlflow']}",
        "COMPOSE_FILE": ":".join(FILES),
    }
    lines, settings = [], {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if match:
            name, value = match[1], match[2]
            value = values.get(name, secret() if value == "change-me" else value)
            line = f"{name}={value}"
            settings[name] = value
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return settings


@dataclass
class ComposeStack:
    directory: Path
    project: str = field(default_factory=lambda: f"echo-rnn-ct-{uuid.uuid4().hex[:8]}")
    figures: dict = field(default_factory=dict)

    def __post_init__(self):
        self.command = compose_command()
        self.ports = {"api": free_port(), "mlflow": free_port(), "flower": free_port()}
        self.env_file = self.directory / "compose.env"
        self.settings = env_file_from_example(self.env_file, self.ports, self.project)
        self.token = self.settings["API_TOKENS"]
        self.mlflow_login = (self.settings["MLFLOW_ADMIN_USERNAME"], self.settings["MLFLOW_ADMIN_PASSWORD"])
        self.flower_login = (self.settings["FLOWER_USERNAME"], self.settings["FLOWER_PASSWORD"])

    # --- Compose ----------------------------------------------------------------------------------

    def compose(
        self,
        *args: str,
        timeout: float = 600,
        check: bool = True,
        log: Path | None = None,
        files: tuple[str, ...] = FILES,
    ) -> subprocess.CompletedProcess:
        words = [*self.command, "--env-file", str(self.env_file), "-p", self.project]
        for name in files:
            words += ["-f", str(ROOT / name)]
        env = {k: os.environ[k] for k in ENGINE_ENV if k in os.environ}
        if log is not None:
            with open(log, "ab") as out:  # text=True: nothing is captured, the result's type is the other branch's
                result = subprocess.run(
                    [*words, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout
                )
        else:
            result = subprocess.run([*words, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            detail = (
                log.read_text(errors="replace")[-4000:] if log else f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
            raise AssertionError(f"{' '.join(args[:3])} failed ({result.returncode}):\n{detail}")
        return result

    def start(self, *args: str, log: Path) -> subprocess.Popen:
        """A Compose command left running (docker-compose 1.29's up waits for the health of dependencies)."""
        words = [*self.command, "--env-file", str(self.env_file), "-p", self.project]
        for name in FILES:
            words += ["-f", str(ROOT / name)]
        env = {k: os.environ[k] for k in ENGINE_ENV if k in os.environ}
        with open(log, "ab") as out:
            return subprocess.Popen([*words, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def config(self, files: tuple[str, ...] = FILES) -> dict:
        return yaml.safe_load(self.compose("config", files=files).stdout)

    def containers(self) -> dict[str, list[str]]:
        """service: ids of its containers (running or not), from the labels Compose puts on them."""
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--format",
                '{{.Label "com.docker.compose.service"}} {{.ID}}',
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found: dict[str, list[str]] = {}
        for line in out.splitlines():
            service, _, container = line.partition(" ")
            found.setdefault(service, []).append(container)
        return found

    def container(self, service: str) -> str:
        ids = self.containers().get(service, [])
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict:
        out = subprocess.run(["docker", "inspect", self.container(service)], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)[0]

    def wait_healthy(
        self, services=SERVICES, timeout: float = 300, starting: subprocess.Popen | None = None
    ) -> dict[str, float]:
        """Wait until every service is healthy; seconds from each container's start to its first healthy
        check (seen within half a second). starting: the up command, which must not fail meanwhile."""
        healthy: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if starting is not None and starting.poll():
                raise AssertionError(f"compose up failed ({starting.returncode})")
            ids = {service: found[0] for service, found in self.containers().items() if service in services and found}
            waiting = {service: container for service, container in ids.items() if service not in healthy}
            if waiting:
                states = json.loads(
                    subprocess.run(
                        ["docker", "inspect", *waiting.values()], capture_output=True, text=True, check=True
                    ).stdout
                )
                for service, state in zip(waiting, (s["State"] for s in states)):
                    if state.get("Health", {}).get("Status") == "healthy":
                        healthy[service] = time.time() - docker_time(state["StartedAt"])
                    elif state["Status"] in ("exited", "dead") and state.get("Restarting") is not True:
                        raise AssertionError(f"{service} exited ({state.get('ExitCode')}) before it was healthy")
            if len(healthy) == len(services):
                return healthy
            time.sleep(0.5)
        raise AssertionError(f"not healthy within {timeout:.0f} s: {sorted(set(services) - set(healthy))}")

    def logs(self, *services: str, tail: int | None = None) -> str:
        args = ["logs", "--no-color"] + ([f"--tail={tail}"] if tail else []) + list(services)
        return self.compose(*args, check=False, timeout=120).stdout

    # --- the published ports ------------------------------------------------------------------------

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def mlflow(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def flower(self) -> str:
        return f"http://127.0.0.1:{self.ports['flower']}"

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def submit(self, **params) -> dict:
        resp = requests.post(f"{self.api}/jobs", json=params, headers=self.bearer(), timeout=30)
        assert resp.status_code == 202, resp.text
        return resp.json()

    def job(self, job_id: str) -> dict:
        resp = requests.get(f"{self.api}/jobs/{job_id}", headers=self.bearer(), timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def sweep(self, sweep_id: str) -> dict:
        resp = requests.get(f"{self.api}/sweeps/{sweep_id}", headers=self.bearer(), timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_job(self, job_id: str, statuses: set[str], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                current = self.job(job_id)
            except (requests.ConnectionError, requests.Timeout):
                current = None
            if current and current["status"] in statuses:
                return current
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} not {statuses} within {timeout:.0f} s: {current}")

    def mlflow_get(self, path: str, **params) -> dict:
        resp = requests.get(f"{self.mlflow}{path}", params=params, auth=self.mlflow_login, timeout=120)
        assert resp.status_code == 200, (path, resp.status_code, resp.text[:500])
        return resp.json()

    def mlflow_get_post(self, path: str, body: dict) -> dict:
        resp = requests.post(f"{self.mlflow}{path}", json=body, auth=self.mlflow_login, timeout=120)
        assert resp.status_code == 200, (path, resp.status_code, resp.text[:500])
        return resp.json()

    def loss_history(self, run_id: str) -> list[tuple[int, float]]:
        """Every point of the run's loss, through the REST API (paged)."""
        points, token = [], None
        while True:
            page = self.mlflow_get(
                "/api/2.0/mlflow/metrics/get-history",
                run_id=run_id,
                metric_key="loss",
                max_results=25000,
                **({"page_token": token} if token else {}),
            )
            points += [(int(m["step"]), float(m["value"])) for m in page.get("metrics", [])]
            token = page.get("next_page_token")
            if not token:
                return sorted(points)


def docker_time(stamp: str) -> float:
    """Seconds since the epoch of Docker's RFC 3339 time with nanoseconds."""
    from datetime import datetime

    main, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(main + "+00:00").timestamp()
    return seconds + float(f"0.{fraction}" if fraction else 0)


def image_size(tag: str) -> int | None:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True, text=True)
    return int(out.stdout) if out.returncode == 0 else None
