"""The serving targets beside the throughput: a large mixed request, an API's start, its memory, a first load.

    .venv/bin/python bench/serve_targets.py          # about 2 minutes (make bench-serve runs it)

Starts the stack as `make run` does (rate limits off), trains a small job, then measures on the
running API: one POST /predict of a 100,000-bit sequence and 999 one-bit sequences (three times,
on a warm model), the first request for versions no API process has loaded, each API process's
resident memory once it serves the champion, and how long a second API (docker/bin/api) takes
from its start to answering /healthz and /readyz.
"""

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from mlflow.tracking import MlflowClient  # noqa: E402

from contract import provenance  # noqa: E402
from tests.support import RedisServer, Stack, free_port, submit, wait_for, wait_status  # noqa: E402

DONE = {"succeeded", "failed", "cancelled"}


def mixed_request(api: str, model: str) -> list[float]:
    """Seconds for POST /predict of one 100,000-bit sequence and 999 one-bit ones, three times, on a warm model."""
    rng = np.random.default_rng(3)
    body = {"sequences": ["".join(map(str, rng.integers(0, 2, 100_000)))] + ["1"] * 999, "model": model}
    for _ in range(20):  # keep-alive off: the requests spread over the processes, and each loads the model
        requests.get(
            f"{api}/predict", params={"sequence": "0110", "model": model}, timeout=60, headers={"Connection": "close"}
        )
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        resp = requests.post(f"{api}/predict", json=body, timeout=120)
        walls.append(time.perf_counter() - t0)
        assert resp.status_code == 200, resp.text[:300]
    return walls


def copies(stack: Stack, version: str, count: int) -> list[str]:
    """Versions registered from version's files, each served (its record copied): versions no API process holds."""
    client = MlflowClient(tracking_uri=stack.mlflow)
    source = client.get_model_version("echo-rnn", version)
    store = redis.Redis.from_url(stack.env["REDIS_URL"])
    files = str(source.source)
    record = provenance.lookup(store, "echo-rnn", "echo-rnn", version)
    assert record is not None, f"version {version} has no record of this service"
    made = []
    for _ in range(count):
        made.append(
            client.create_model_version(
                "echo-rnn", files, run_id=source.run_id, model_id=files.rsplit("/", 1)[-1]
            ).version
        )
        provenance.copy(store, "echo-rnn", record, made[-1])
    return made


def first_loads(stack: Stack, version: str, count: int) -> list[float]:
    """Milliseconds of the first request for versions no API process holds (copies of version's files)."""
    walls = []
    for copy in copies(stack, version, count):
        t0 = time.perf_counter()
        resp = requests.get(
            f"{stack.api}/predict", params={"sequence": "0110" * 25, "model": f"models:/echo-rnn/{copy}"}, timeout=60
        )
        walls.append(1000 * (time.perf_counter() - t0))
        assert resp.status_code == 200, resp.text
    return walls


def champion_while_cycling(stack: Stack, version: str, seconds: float = 15) -> tuple[list[float], dict[int, int]]:
    """Milliseconds of champion predictions while another client names nine versions in turn, and that client's answers."""
    MlflowClient(tracking_uri=stack.mlflow).set_registered_model_alias("echo-rnn", "champion", version)
    cold = copies(stack, version, 9)
    answers: dict[int, int] = {}
    stop = threading.Event()

    def cycle() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                for copy in cold:
                    status = session.get(
                        f"{stack.api}/predict",
                        params={"sequence": "0110" * 25, "model": f"models:/echo-rnn/{copy}"},
                        headers={"Connection": "close"},
                        timeout=60,
                    ).status_code
                    answers[status] = answers.get(status, 0) + 1

    cycler = threading.Thread(target=cycle)
    cycler.start()
    walls = []
    with requests.Session() as session:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            assert session.get(f"{stack.api}/predict", params={"sequence": "0110" * 25}, timeout=60).status_code == 200
            walls.append(1000 * (time.perf_counter() - t0))
    stop.set()
    cycler.join()
    return walls, answers


def api_memory_mib(stack: Stack) -> list[float]:
    """Resident memory of each API worker process (granian's children), after each served the champion."""
    for _ in range(20):  # keep-alive off: the requests spread over the processes
        requests.get(f"{stack.api}/predict", params={"sequence": "0110"}, timeout=60, headers={"Connection": "close"})
    out = subprocess.run(["pgrep", "-f", f"granian.*--port {stack.api_port}"], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    sizes = []
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        sizes.append(int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024)
    return sizes


def api_start_s(stack: Stack) -> tuple[float, float]:
    """Seconds from starting a second API (docker/bin/api, one process) to /healthz, and to /readyz, answering 200."""
    port = free_port()
    env = {
        **stack.env,
        "API_PORT": str(port),
        "API_WORKERS": "1",
        "MLFLOW_TRACKING_URI": stack.mlflow,
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="echo-rnn-start-"),
    }
    t0 = time.perf_counter()
    process = subprocess.Popen(
        [str(ROOT / "docker" / "bin" / "api")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok, 60, "the API", 0.02)
        healthy = time.perf_counter() - t0
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok, 60, "the API ready", 0.02)
        return healthy, time.perf_counter() - t0
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)


def main() -> int:
    """Start the stack, train a job, measure; one line per figure (--quick: fewer and shorter, to check it runs)."""
    quick = "--quick" in sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="echo-rnn-targets-") as tmp:
        redis_server = RedisServer(Path(tmp) / "redis").start()
        stack = Stack(ROOT, Path(tmp), redis_server.url, concurrency=1)
        stack.env.update(RATE_LIMIT_PREDICT="", RATE_LIMIT_JOBS="", API_WORKERS=str(len(os.sched_getaffinity(0))))
        stack.env.pop("MODEL_LOADS_PER_CLIENT")  # the default limit: what a client cycling versions meets
        try:
            stack.start()
            done = wait_status(
                stack.api, submit(stack.api, num_epochs=5, seed=1, init="glorot")["id"], DONE, timeout=300
            )
            assert done["status"] == "succeeded", done
            model = done["model"]["uri"]
            print(
                f"mixed POST /predict (100,000 bits + 999 × 1 bit), warm: {', '.join(f'{w:.3f}' for w in mixed_request(stack.api, model))} s"
            )
            loads = first_loads(stack, done["model"]["version"], 2 if quick else 5)
            print(
                f"first request for a version not loaded: median {np.median(loads):.0f} ms ({', '.join(f'{w:.0f}' for w in loads)})"
            )
            walls, answers = champion_while_cycling(stack, done["model"]["version"], 3 if quick else 15)
            print(
                f"champion while another client cycles nine versions: p50 {np.percentile(walls, 50):.1f} ms, "
                f"p99 {np.percentile(walls, 99):.1f} ms over {len(walls)} requests; that client's answers {answers}"
            )
            print(
                f"API processes' resident memory with the champion: {', '.join(f'{m:.0f}' for m in api_memory_mib(stack))} MiB"
            )
            healthy, ready = api_start_s(stack)
            print(f"API start to /healthz: {healthy:.2f} s; to /readyz: {ready:.2f} s")
        finally:
            stack.stop()
            redis_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
