"""Serving and queue speed: our API beside `mlflow models serve`, the queue, a whole job, model loading.

    .venv/bin/python bench/serve_speed.py                      # about 5 minutes
    .venv/bin/python bench/serve_speed.py --report out.md      # also write the results as Markdown
    .venv/bin/python bench/serve_speed.py --quick              # a tiny configuration that only checks it runs

It starts the stack exactly as `make run` does (docker/bin/run-local, Redis of its own, one warm
worker process), trains the tutorial's default job through the API, then serves that model from
(a) our API (granian, one process per core) and (b) `mlflow models serve --env-manager local`, at
its default of one worker and with one per core, and loads each from wrk on loopback, same
sequence, same connections; ratios are against mlflow's better configuration. (c) A Flask route
under granian with the API's process count, answering the echo computed in Python without a
model (bench/flask_ceiling.py), is the ceiling of a Flask API here: our share of it is printed too. Rate limits
are off for the run (mlflow serve has none). Compare ratios, never absolute times: the machine is
shared.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from mlflow.tracking import MlflowClient  # noqa: E402

import report  # noqa: E402
import wrk  # noqa: E402
from contract import provenance  # noqa: E402
from contract.params import TrainingParams  # noqa: E402
from tests.support import RedisServer, Stack, free_port, submit, wait_for, wait_status  # noqa: E402

DONE = {"succeeded", "failed", "cancelled"}


def timestamp(iso: str) -> float:
    """A job record's time as seconds since the epoch."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def queue_latency(stack: Stack, jobs: int) -> dict[str, list[float]]:
    """Per small job on a warm idle worker: POST returned → running, last epoch → succeeded (ms)."""
    client = MlflowClient(tracking_uri=stack.mlflow)
    to_running, to_done = [], []
    for seed in range(jobs):
        job = submit(stack.api, num_epochs=2, total_series_length=3_000, seed=seed)
        posted = time.time()
        done = wait_status(stack.api, job["id"], DONE, timeout=120)
        assert done["status"] == "succeeded", done
        to_running.append(1000 * (timestamp(done["started_at"]) - posted))
        last_epoch = client.get_metric_history(done["mlflow"]["run_id"], "epoch_loss")[-1].timestamp / 1000
        to_done.append(1000 * (timestamp(done["finished_at"]) - last_epoch))
    return {"to_running_ms": to_running, "to_succeeded_ms": to_done}


SMALL_JOB = dict(num_epochs=5, total_series_length=20_000)


def small_jobs(stack: Stack, jobs: int) -> list[float]:
    """Wall seconds of small jobs on a warm idle worker, POST → succeeded with the model registered."""
    walls = []
    for seed in range(jobs):
        t0 = time.perf_counter()
        done = wait_status(stack.api, submit(stack.api, **SMALL_JOB, seed=seed)["id"], DONE, timeout=300)
        assert done["status"] == "succeeded", done
        walls.append(time.perf_counter() - t0)
    return walls


def engine_training_s(jobs: int) -> list[float]:
    """Seconds the engine alone takes to train the same small jobs, in a warm process of its own (compilation included)."""
    code = (
        "import sys, time, json; sys.path[:0] = [sys.argv[1]]\n"
        "from contract.params import TrainingParams\nfrom worker.engine.train import train_model\n"
        "train_model(TrainingParams(num_epochs=1, total_series_length=3000, seed=0))\n"
        "walls = []\n"
        "for seed in range(int(sys.argv[3])):\n"
        "    t0 = time.perf_counter(); train_model(TrainingParams(**json.loads(sys.argv[2]), seed=seed))\n"
        "    walls.append(time.perf_counter() - t0)\n"
        "print(json.dumps(walls))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), json.dumps(SMALL_JOB), str(jobs)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=1800,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def whole_job(stack: Stack, params: TrainingParams) -> tuple[float, dict]:
    """Wall seconds of one job through the API, POST to succeeded with its model registered."""
    t0 = time.perf_counter()
    job = submit(stack.api, **params.model_dump(exclude={"device", "time_limit_s"}))
    done = wait_status(stack.api, job["id"], DONE, timeout=1800)
    assert done["status"] == "succeeded", done
    return time.perf_counter() - t0, done


def tutorial_program(params: TrainingParams) -> float:
    """Wall seconds of the tutorial's own TF1 program at the same settings, in a process of its own."""
    code = (
        "import sys, time; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/bench']\n"
        "t0 = time.perf_counter()\n"
        "import numpy as np, tutorial_tf1\n"
        "from worker.engine.model import initial_weights\n"
        "from contract.params import TrainingParams\n"
        "p = TrainingParams.model_validate_json(sys.argv[2]); rng = np.random.default_rng(p.seed)\n"
        "program = tutorial_tf1.build(p, initial_weights(rng, p))\n"
        "for _ in range(p.num_epochs): tutorial_tf1.run_epoch(program, *tutorial_tf1.generate_data(rng, p))\n"
        "print(time.perf_counter() - t0)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), params.model_dump_json()],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=3600,
    )
    return float(out.stdout.split()[-1])


class FlaskCeiling:
    """bench/flask_ceiling.py under granian, with the API's process count, on a port of its own."""

    def __init__(self, workers: int, log: Path):
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "granian"),
                "--interface",
                "wsgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--blocking-threads",
                "1",
                "--no-ws",
                "flask_ceiling:app",
            ],
            cwd=ROOT / "bench",
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}/predict"
        wait_for(lambda: requests.get(self.url, params={"sequence": "0110"}, timeout=2).ok, 60, "the Flask ceiling")

    def stop(self) -> None:
        """Stop the server and its workers."""
        os.killpg(self.process.pid, 15)
        self.process.wait(30)


class MlflowServe:
    """`mlflow models serve` of one registered version, local environment, on a port of its own."""

    def __init__(self, tracking_uri: str, model_uri: str, workers: int, log: Path):
        self.port = free_port()
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        }
        self.process = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "mlflow"),
                "models",
                "serve",
                "-m",
                model_uri,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-w",
                str(workers),
            ],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}/invocations"
        wait_for(lambda: requests.get(f"http://127.0.0.1:{self.port}/ping", timeout=2).ok, 180, "mlflow models serve")

    def stop(self) -> None:
        """Stop the server and its workers."""
        os.killpg(self.process.pid, 15)
        self.process.wait(30)


def same_answers(api: str, model: str, serve: MlflowServe, bits: str) -> float:
    """Both servers' P(bit = 1) for one sequence; their largest difference."""
    ours = requests.get(f"{api}/predict", params={"sequence": bits, "model": model}, timeout=60).json()["probabilities"]
    theirs = requests.post(serve.url, json={"inputs": [[int(b) for b in bits]]}, timeout=60).json()["predictions"][0]
    return float(np.max(np.abs(np.array(ours) - np.array(theirs))))


def predictions(
    stack: Stack,
    serves: dict[str, MlflowServe],
    ceiling: FlaskCeiling,
    model: str,
    bits: str,
    seconds: float,
    scripts: Path,
) -> dict:
    """wrk at 8 and 64 connections against every server, one sequence per request; then batches."""
    url = f"{stack.api}/predict?sequence={bits}&model={model}"
    flask_url = f"{ceiling.url}?sequence={bits}&model={model}"
    theirs = wrk.lua_post(scripts, "one", json.dumps({"inputs": [[int(b) for b in bits]]}))
    out: dict = {"one": {}, "batch": {}}
    for connections in (8, 64):
        wrk.run(url, connections, min(seconds, 3))  # warm every server: connections, caches
        wrk.run(flask_url, connections, min(seconds, 3))
        for serve in serves.values():
            wrk.run(serve.url, connections, min(seconds, 3), theirs)
        out["one"][connections] = {
            "ours": wrk.run(url, connections, seconds),
            "ceiling": wrk.run(flask_url, connections, seconds),
            "mlflow": {label: wrk.run(serve.url, connections, seconds, theirs) for label, serve in serves.items()},
        }
    rng = np.random.default_rng(7)
    batch = rng.integers(0, 2, (1000, len(bits)))
    ours_batch = wrk.lua_post(
        scripts, "batch-ours", json.dumps({"sequences": ["".join(map(str, row)) for row in batch], "model": model})
    )
    theirs_batch = wrk.lua_post(scripts, "batch-mlflow", json.dumps({"inputs": batch.tolist()}))
    out["batch"] = {
        "ours": wrk.run(f"{stack.api}/predict", 2, seconds, ours_batch),
        "mlflow": {label: wrk.run(serve.url, 2, seconds, theirs_batch) for label, serve in serves.items()},
    }
    return out


def best(loads: dict[str, wrk.Load]) -> wrk.Load:
    """The competitor at its best: the configuration with the most requests/s."""
    return max(loads.values(), key=lambda load: load.rps)


def model_loading(stack: Stack, source_version: str, versions: int) -> dict:
    """First request for a version no API process holds, the next one, and memory per cached model."""
    client = MlflowClient(tracking_uri=stack.mlflow)
    source = client.get_model_version("echo-rnn", source_version)
    files = str(source.source)
    fresh = [
        client.create_model_version("echo-rnn", files, run_id=source.run_id, model_id=files.rsplit("/", 1)[-1]).version
        for _ in range(versions)
    ]
    store = redis.Redis.from_url(stack.env["REDIS_URL"])  # the copies hold the same files: the API may serve them
    record = provenance.lookup(store, "echo-rnn", "echo-rnn", source_version)
    assert record is not None, f"version {source_version} has no record of this service"
    for version in fresh:
        provenance.copy(store, "echo-rnn", record, version)
    first: list[float] = []
    next_: list[float] = []
    for version in fresh:
        session = requests.Session()  # one keep-alive connection: both requests reach the same API process
        for into in (first, next_):
            t0 = time.perf_counter()
            resp = session.get(
                f"{stack.api}/predict",
                params={"sequence": "0110" * 25, "model": f"models:/echo-rnn/{version}"},
                timeout=120,
            )
            into.append(1000 * (time.perf_counter() - t0))
            assert resp.status_code == 200, resp.text
    code = (
        "import sys, json\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20\n"
        "from service import lean\nlean.keep_out()  # as the API's entry point does\n"
        "from service.app import create_app\nfrom service.settings import Settings\n"
        "reg = create_app(Settings(redis_url=sys.argv[1], mlflow_tracking_uri=sys.argv[2], model_cache_size=64)).extensions['echo'].models\n"
        "versions = json.loads(sys.argv[3]); reg.get(f'models:/echo-rnn/{versions[0]}'); before = rss()\n"
        "for v in versions[1:]: reg.get(f'models:/echo-rnn/{v}')\n"
        "print(json.dumps({'first_mib': before, 'per_model_mib': (rss() - before) / (len(versions) - 1)}))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code, stack.env["REDIS_URL"], stack.mlflow, json.dumps([source_version, *fresh])],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    memory = json.loads(out.stdout.strip().splitlines()[-1])
    return {"first_ms": first, "next_ms": next_, **memory}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny configuration: only checks it runs")
    parser.add_argument("--seconds", type=float, help="seconds per wrk measurement (default 10; quick 1)")
    parser.add_argument("--epochs", type=int, help="epochs of the whole job (default: the tutorial's 100; quick 2)")
    parser.add_argument("--report", type=Path, help="also write the results as Markdown here")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (1 if args.quick else 10)
    args.epochs = args.epochs or (2 if args.quick else TrainingParams().num_epochs)
    return args


def main(argv: list[str] | None = None) -> int:
    """Start the stack, run every part, print the results; the last line is the headline ratio."""
    args = parse_args(argv)
    workers = len(os.sched_getaffinity(0))
    params = TrainingParams.model_validate(
        {"num_epochs": args.epochs, "seed": 1, **({"total_series_length": 7_500} if args.quick else {})}
    )
    bits = "".join(map(str, np.random.default_rng(0).integers(0, 2, 100)))
    with tempfile.TemporaryDirectory(prefix="echo-rnn-bench-") as tmp_name:
        tmp = Path(tmp_name)
        redis_server = RedisServer(tmp / "redis").start()
        stack = Stack(ROOT, tmp, redis_server.url, concurrency=1)
        stack.env.update(RATE_LIMIT_PREDICT="", RATE_LIMIT_JOBS="", API_WORKERS=str(workers))
        serves: dict[str, MlflowServe] = {}
        ceiling: FlaskCeiling | None = None
        try:
            stack.start()
            results: dict = {"workers": workers, "params": params.model_dump()}
            print(f"stack up (API {stack.api}); warming the worker", flush=True)
            warm = submit(stack.api, num_epochs=1, total_series_length=3_000, seed=0)
            assert wait_status(stack.api, warm["id"], DONE, timeout=300)["status"] == "succeeded"
            results["queue"] = queue_latency(stack, 3 if args.quick else 10)
            results["small"] = {
                "job_s": small_jobs(stack, 2 if args.quick else 10),
                "engine_s": engine_training_s(2 if args.quick else 10),
                "params": SMALL_JOB,
            }
            print("queue measured; the whole job next", flush=True)
            results["job_s"], job = whole_job(stack, params)
            results["tutorial_s"] = tutorial_program(params)
            model = job["model"]["uri"]
            # mlflow models serve at its default (one worker) and with a worker per core, as ours.
            for count in sorted({1, workers}):
                label = f"{count} worker{'s' if count > 1 else ''}"
                serves[label] = MlflowServe(stack.mlflow, model, count, tmp / f"mlflow-serve-{count}.log")
            results["max_difference"] = max(same_answers(stack.api, model, serve, bits) for serve in serves.values())
            print("the servers answer the same; loading them", flush=True)
            ceiling = FlaskCeiling(workers, tmp / "flask-ceiling.log")
            results["predict"] = predictions(stack, serves, ceiling, model, bits, args.seconds, tmp)
            for serve in serves.values():
                serve.stop()
            serves.clear()
            results["loading"] = model_loading(stack, job["model"]["version"], 2 if args.quick else 4)
        finally:
            for serve in serves.values():
                serve.stop()
            if ceiling is not None:
                ceiling.stop()
            stack.stop()
            redis_server.stop()
    text = report.markdown(results)
    print(text)
    if args.report:
        args.report.write_text(text)
    ours, theirs = results["predict"]["one"][8]["ours"].rps, best(results["predict"]["one"][8]["mlflow"]).rps
    flask = results["predict"]["one"][8]["ceiling"].rps
    print(f"job speedup vs seed reference: {results['tutorial_s'] / results['job_s']:.1f}x")
    print(
        f"predict share of the Flask ceiling: {100 * ours / flask:.0f} %"
        if flask
        else "predict share of the Flask ceiling: n/a (the ceiling completed no request)"
    )
    print(f"predict speedup vs mlflow serve: {report.ratio(ours, theirs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
