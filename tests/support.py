"""Helpers of the suite: real server processes and polling of the API."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import requests

from contract.fence import FencedWriter, Step
from contract.job_store import JobStore

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.2):
    """Poll check() until it returns a truthy value; fail the test with what when time runs out."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 (the thing polled is not up yet)
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout} s (last error: {last_error})")


class RedisServer:
    """A redis-server process of the test's own, on its own port."""

    def __init__(self, directory: Path, port: int | None = None, appendonly: bool = False):
        self.port = port or free_port()
        self.directory = directory
        self.appendonly = appendonly
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        """Start it and wait until it answers."""
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (make test installs Debian's redis-server)"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_for(client.ping, 10, f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Stack:
    """The whole service started by docker/bin/run-local, the command behind make run."""

    def __init__(self, root: Path, data: Path, redis_url: str, concurrency: int = 2):
        self.api_port, self.mlflow_port, self.flower_port = free_port(), free_port(), free_port()
        self.log_path = data / "stack.log"
        self.env = {
            **os.environ,
            "PATH": f"{root / '.venv' / 'bin'}:{os.environ['PATH']}",
            "ECHO_RNN_DATA": str(data),
            "REDIS_URL": redis_url,
            "API_PORT": str(self.api_port),
            "MLFLOW_PORT": str(self.mlflow_port),
            "FLOWER_PORT": str(self.flower_port),
            "WORKER_CONCURRENCY": str(concurrency),
            # Every test talks to the API from 127.0.0.1, one client to it, and registers many versions:
            # the limit on a client's model loads has tests of its own (tests/service/test_models.py).
            "MODEL_LOADS_PER_CLIENT": "",
        }
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.root = root
        self.process: subprocess.Popen | None = None

    @property
    def api(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow(self) -> str:
        """Base URL of the MLflow server."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    def start(self) -> "Stack":
        """Start it and wait until the API says it is ready and a worker answers."""
        # The child keeps its own copy of the log's descriptor: ours closes once it has started.
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(self.root / "docker" / "bin" / "run-local")],
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready() -> bool:
            assert self.process.poll() is None, f"the stack exited; see {self.log_path}"
            return requests.get(f"{self.api}/readyz", timeout=2).status_code == 200

        wait_for(ready, 180, "the stack's /readyz", interval=1)
        wait_for(lambda: b"ready." in self.log_path.read_bytes(), 60, "a Celery worker")
        return self

    def stop(self) -> None:
        """Ctrl-C it, as a person would, then make sure nothing is left."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def logs(self) -> str:
        """What the stack printed so far."""
        return self.log_path.read_text(errors="replace")


def submit(api: str, **params) -> dict:
    """POST /jobs and return the job."""
    resp = requests.post(f"{api}/jobs", json=params, timeout=10)
    assert resp.status_code == 202, resp.text
    return resp.json()


def wait_status(api: str, job_id: str, statuses: set[str], timeout: float = 120) -> dict:
    """Poll GET /jobs/{id} until its status is one of statuses."""
    return _wait_record(f"{api}/jobs/{job_id}", statuses, timeout)


def _wait_record(url: str, statuses: set[str], timeout: float) -> dict:
    """Poll a job's or a sweep's URL until its status is one of statuses."""

    def check():
        record = requests.get(url, timeout=10).json()
        return record if record["status"] in statuses else None

    return wait_for(check, timeout, f"{url} reaching {statuses}", interval=0.1)


def submit_sweep(api: str, body: dict) -> dict:
    """POST /sweeps and return the sweep."""
    resp = requests.post(f"{api}/sweeps", json=body, timeout=30)
    assert resp.status_code == 202, resp.text
    return resp.json()


def wait_sweep(api: str, sweep_id: str, statuses: set[str], timeout: float = 300) -> dict:
    """Poll GET /sweeps/{id} until its status is one of statuses."""
    return _wait_record(f"{api}/sweeps/{sweep_id}", statuses, timeout)


PROBLEM = "application/problem+json"


def problem(resp, status: int) -> dict:
    """Assert a Flask test response is a problem document with this status; return its body."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    body = resp.get_json(force=True)
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def loss_steps(total: int, max_points: int = 2000) -> list[int]:
    """The steps of a run's `loss` points: every step, or each bucket's last step (a partial bucket's last one too)."""
    k = max(1, -(-total // max_points))
    return [*range(k - 1, total - total % k, k), *([total - 1] if total % k else [])]


def loss_history_artifact(mlflow_url: str, run_id: str) -> list[tuple[int, float]]:
    """Every step's loss as the run's loss_history.csv.gz holds it."""
    import gzip

    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="loss_history.csv.gz", dst_path=tmp, tracking_uri=mlflow_url
        )
        lines = gzip.decompress(Path(path).read_bytes()).decode().splitlines()
    assert lines[0] == "step,loss"
    return [(int(step), float(value)) for step, value in (line.split(",") for line in lines[1:])]


class Recording(FencedWriter):
    """The service's fenced writer, noting the bytes each step carries to Redis."""

    def __init__(self, store: JobStore):
        super().__init__(store.redis, store.prefix, store.retention_s)
        self.sizes: list[int] = []

    def run(self, step: Step, release: bool = False) -> list[int]:
        self.sizes.append(sum(len(p) for p in step.payloads))
        return super().run(step, release)
