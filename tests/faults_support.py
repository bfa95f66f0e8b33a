"""Server processes a fault test can stop and start again one by one: MLflow, workers, the API.

Each runs the docker/bin script the Procfile names for its role, in a process group of its own
(so stopping it stops its children too), with its output in a log file of the test's.
"""

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import requests
from mlflow.tracking import MlflowClient

from tests.support import ROOT, RedisServer, free_port, wait_for

# Settings a test process must not inherit from the environment pytest runs in.
_INHERITED = ("REDIS_URL", "MLFLOW_", "API_", "WORKER_", "FLOWER_", "PROMETHEUS_MULTIPROC_DIR", "ECHO_RNN_")


def base_environment(**extra: str) -> dict[str, str]:
    """The environment of a role: this checkout's venv first on PATH, none of the caller's service settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED)}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"
    env.update(extra)
    return env


class Process:
    """One docker/bin script in a process group of its own; stop() and start() again at will."""

    def __init__(self, role: str, env: dict[str, str], log_path: Path):
        self.role, self.env, self.log_path = role, env, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> "Process":
        """Start it (appending to its log) and wait until it is ready."""
        # The child keeps its own copy of the log's descriptor: ours closes once it has started.
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} start {self.role}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [str(ROOT / "docker" / "bin" / self.role)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Block until the role answers."""

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Send sig to its whole process group and wait; SIGKILL the group if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap_group()

    def kill(self) -> None:
        """SIGKILL its whole process group."""
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self._reap_group()

    def _reap_group(self) -> None:
        """Children that outlive the leader (a worker's pool) hold ports and jobs: end them too."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def logs(self) -> str:
        """What it printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class MlflowServer(Process):
    """docker/bin/mlflow on a port of its own, with a SQLite store and artifacts in a directory: restartable in place."""

    def __init__(self, directory: Path, port: int | None = None):
        self.port = port or free_port()
        directory.mkdir(parents=True, exist_ok=True)
        env = base_environment(
            MLFLOW_HOST="127.0.0.1",
            MLFLOW_PORT=str(self.port),
            MLFLOW_WORKERS="1",
            MLFLOW_BACKEND_STORE_URI=f"sqlite:///{directory / 'mlflow.db'}",
            MLFLOW_ARTIFACTS_DESTINATION=str(directory / "artifacts"),
        )
        super().__init__("mlflow", env, directory / "mlflow.log")

    @property
    def url(self) -> str:
        """Its tracking URI."""
        return f"http://127.0.0.1:{self.port}"

    def answers(self) -> bool:
        """Whether /health answers 200 now."""
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.running, f"mlflow server exited; see {self.log_path}:\n{self.logs()[-2000:]}"
            return self.answers()

        wait_for(ready, 180, f"MLflow on port {self.port}", interval=0.5)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        super().stop(sig, timeout)
        wait_for(lambda: not self.answers(), 10, f"MLflow on port {self.port} going away")


class Worker(Process):
    """docker/bin/worker: one Celery node, one job at a time."""

    def __init__(self, directory: Path, redis_url: str, mlflow_url: str, name: str, **settings: str):
        env = base_environment(
            REDIS_URL=redis_url, MLFLOW_TRACKING_URI=mlflow_url, WORKER_CONCURRENCY="1", WORKER_NAME=name, **settings
        )
        super().__init__("worker", env, directory / f"worker-{name}.log")
        self.name = name
        self._ready_seen = 0

    def start(self) -> "Worker":
        self._ready_seen = self.logs().count("ready.")
        super().start()
        return self

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.running, f"worker {self.name} exited; see {self.log_path}:\n{self.logs()[-2000:]}"
            return self.logs().count("ready.") > self._ready_seen

        wait_for(ready, 120, f"worker {self.name}", interval=0.5)


class Api(Process):
    """docker/bin/api under granian with one worker process (so one model cache answers every request)."""

    def __init__(self, directory: Path, redis_url: str, mlflow_url: str, **settings: str):
        self.port = free_port()
        env = base_environment(
            REDIS_URL=redis_url,
            MLFLOW_TRACKING_URI=mlflow_url,
            API_HOST="127.0.0.1",
            API_PORT=str(self.port),
            API_WORKERS="1",
            PROMETHEUS_MULTIPROC_DIR=str(directory / "api-metrics"),
            **settings,
        )
        super().__init__("api", env, directory / "api.log")

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.running, f"api exited; see {self.log_path}:\n{self.logs()[-2000:]}"
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200

        wait_for(ready, 120, f"API on port {self.port}", interval=0.5)


@dataclass
class Service:
    """A service of a fault test's own: Redis (append-only file), MLflow and the API; worker nodes started per test."""

    directory: Path
    redis: RedisServer
    mlflow: MlflowServer
    api: Api
    workers: list[Worker] = field(default_factory=list)
    twins: dict[str, dict] = field(default_factory=dict)  # uninterrupted runs' loss histories, by parameters

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.mlflow.url)

    def worker(self, name: str, **settings: str) -> Worker:
        """A worker node of the test's own, started and ready."""
        node = Worker(self.directory, self.redis.url, self.mlflow.url, name, **settings).start()
        self.workers.append(node)
        return node

    def stop_workers(self) -> None:
        """SIGKILL every node (a node left paused by a failed test is woken to take it)."""
        for node in self.workers:
            if node.process is not None and node.process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(node.process.pid, signal.SIGCONT)
            node.kill()
        self.workers.clear()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.role} {getattr(p, 'name', '')}\n{p.logs()[-3000:]}" for p in (self.api, *self.workers)
        )


@contextmanager
def running_service(directory: Path, artifacts: Path, **api_settings: str) -> Iterator[Service]:
    """The service started in directory (the API with api_settings too); on leaving, everything stopped and its
    logs copied to artifacts."""
    redis = RedisServer(directory / "redis", appendonly=True)
    mlflow = MlflowServer(directory / "mlflow")
    api = Api(directory, redis.url, mlflow.url, **{"RATE_LIMIT_JOBS": "", "RATE_LIMIT_PREDICT": "", **api_settings})
    service = Service(directory, redis, mlflow, api)
    try:
        for part in (redis, mlflow, api):
            part.start()
        yield service
    finally:
        service.stop_workers()
        for process in (api, mlflow):
            process.kill()
        redis.stop()
        artifacts.mkdir(parents=True, exist_ok=True)
        for log in directory.glob("*.log"):
            shutil.copy(log, artifacts / log.name)
