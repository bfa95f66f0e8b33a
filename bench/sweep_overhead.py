"""A sweep's own overhead, in one process: where the seconds of a group go besides training.

    .venv/bin/python bench/sweep_overhead.py            # a 32-trial sweep of 5 epochs (seeds 0-31)
    .venv/bin/python bench/sweep_overhead.py --quick    # 4 tiny trials: only checks that it runs

Starts a Redis and an `mlflow server` (SQLite, proxied artifacts, as `make run` does) of its own, records a
sweep as the API would, and runs its one group through the worker's attempt (worker.attempt.run.run_attempt:
claim, runs, training, publishing, the runs' ends, the sweep's end) in this process, once to warm up (every
program compiled, the experiment and registered model created), then timed. Prints the seconds of each
stage and the MLflow requests sent, by endpoint, and last `sweep overhead: N.N s besides M.M s of training`.
"""

import argparse
import collections
import functools
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.faults_support import MlflowServer  # noqa: E402
from tests.support import RedisServer  # noqa: E402

STAGES: dict[str, float] = collections.defaultdict(float)
REQUESTS: collections.Counter[str] = collections.Counter()
REQUEST_S: dict[str, float] = collections.defaultdict(float)
_lock = threading.Lock()


def timed(owner: Any, name: str, stage: str) -> None:
    """Add the wall seconds of owner.name's calls (from any thread) to STAGES[stage]."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                STAGES[stage] += time.perf_counter() - t0

    setattr(owner, name, wrapper)


def count_requests() -> None:
    """Count every request MLflow's client sends, by method and endpoint."""
    from mlflow.utils import rest_utils

    send = rest_utils._get_http_response_with_retries

    def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        endpoint = "mlflow-artifacts" if "/mlflow-artifacts/" in url else url.split("/api/", 1)[-1]
        t0 = time.perf_counter()
        try:
            return send(method, url, *args, **kwargs)
        finally:
            with _lock:
                REQUESTS[f"{method} {endpoint}"] += 1
                REQUEST_S[f"{method} {endpoint}"] += time.perf_counter() - t0

    rest_utils._get_http_response_with_retries = counted


def instrument() -> None:
    """Time the stages of an attempt and of a sweep's end."""
    from worker.attempt import attempt, publishing, rungs, runs, sweep_end
    from worker.engine import group
    from worker.tracking import publish

    timed(runs, "open_runs", "open the child runs")
    timed(attempt.Attempt, "_save", "save: evaluation, publishing, ends")
    timed(publishing, "publish_group", "  publish the group (best model logged)")
    timed(publishing, "log_model", "    log the best model")
    timed(attempt.Attempt, "end", "  close the runs, end the trials")
    timed(sweep_end, "finish", "the sweep's end")
    timed(sweep_end, "_publish_best", "  register and gate the best model")
    timed(publish, "register", "    register the version")
    timed(sweep_end, "_log_parent", "  the parent run's files")
    timed(sweep_end, "_figure", "    draw loss_curves.png")
    timed(attempt.Attempt, "_start_sweep", "start the sweep, open its run")
    timed(group, "train_group", "train (the compiled group)")
    timed(rungs.Rungs, "__call__", "  record the rungs (in training)")
    timed(attempt.Attempt, "wrap_up", "    wrap up pruned trials")


def cpu_seconds(group: int) -> float:
    """The CPU seconds (user and system) the processes of a process group have used so far (Linux's /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 11 and 12
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextmanager
def servers(tmp: Path) -> Iterator[tuple[str, str, int]]:
    """A Redis and an MLflow server of this run's own: their URLs, and the MLflow server's process group."""
    redis_server = RedisServer(tmp / "redis").start()
    mlflow_server = MlflowServer(tmp / "mlflow")
    mlflow_server.start()
    assert mlflow_server.process is not None, "started"
    try:
        yield redis_server.url, mlflow_server.url, mlflow_server.process.pid
    finally:
        mlflow_server.stop()
        redis_server.stop()


def one_sweep(store: Any, settings: Any, body: dict) -> tuple[float, str]:
    """Record a sweep as POST /sweeps does and run its groups here, one after another; seconds and its status."""
    from contract.sweep import SweepRequest, group
    from contract.sweep_store import SweepStore
    from worker.attempt.run import run_attempt
    from worker.attempt.unit import Unit

    request = SweepRequest.model_validate(body)
    trials = request.trials()
    sweeps = SweepStore(store)
    sweep = sweeps.create(request, trials, group(trials, 32))
    t0 = time.perf_counter()
    for g, members in enumerate(sweep.groups):
        outcome = run_attempt(store, settings, Unit([sweep.trials[i].job_id for i in members], sweep.id, g))
        assert outcome in ("succeeded", "finished"), outcome
    seconds = time.perf_counter() - t0
    ended = sweeps.get(sweep.id)
    assert ended is not None and ended.status == "succeeded", ended
    return seconds, ended.status


def bodies(quick: bool, search: str | None) -> tuple[dict, dict]:
    """The warm-up sweep's request and the timed one's: 32 seeds, or bench/sweep_speed.py's 64-trial search."""
    if search is None:
        params = {"num_epochs": 2, "total_series_length": 3_000} if quick else {"num_epochs": 5}
        seeds = list(range(4 if quick else 32))
        return (
            {"params": params, "grid": {"seed": [1000 + s for s in seeds]}},
            {"params": params, "grid": {"seed": seeds}},
        )
    from sweep_speed import search as searched  # beside this file

    body = searched(quick, 0, search == "halving")
    return body, body


def main(argv: list[str] | None = None) -> int:
    """Warm up, then time one sweep's group and end; print the stages."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 tiny trials: only checks that it runs")
    parser.add_argument("--profile", metavar="FILE", help="also write a cProfile of the timed sweep to FILE")
    parser.add_argument(
        "--search", choices=["halving", "full"], help="time bench/sweep_speed.py's 64-trial search instead"
    )
    args = parser.parse_args(argv)
    warm, timed_body = bodies(args.quick, args.search)
    import redis

    from contract.job_store import JobStore
    from worker.settings import WorkerSettings

    with (
        tempfile.TemporaryDirectory(prefix="echo-rnn-sweep-overhead-") as tmp,
        servers(Path(tmp)) as (rurl, murl, group),
    ):
        settings = WorkerSettings(redis_url=rurl, mlflow_tracking_uri=murl, mlflow_experiment="sweep-overhead")
        settings.configure_mlflow_client()
        store = JobStore(redis.Redis.from_url(rurl), settings.job_key_prefix, settings.job_retention_s)
        instrument()
        count_requests()
        one_sweep(store, settings, warm)  # warm: compiled, experiment and model made
        STAGES.clear()
        REQUESTS.clear()
        REQUEST_S.clear()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        server_cpu, own_cpu = cpu_seconds(group), time.process_time()
        seconds, status = one_sweep(store, settings, timed_body)
        server_cpu, own_cpu = cpu_seconds(group) - server_cpu, time.process_time() - own_cpu
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    report(seconds, status, timed_body)
    print(f"  CPU: the MLflow server {server_cpu:.2f} s, this process (training included) {own_cpu:.2f} s")
    training = STAGES["train (the compiled group)"]
    print(f"sweep overhead: {seconds - training:.1f} s besides {training:.1f} s of training")
    return 0


def report(seconds: float, status: str, body: dict) -> None:
    """The stages, the requests, and the overhead line last."""
    print(f"\n{json.dumps(body)}, in one process: {seconds:.2f} s to {status}")
    for stage, s in STAGES.items():
        print(f"  {stage:45s} {s:6.2f} s")
    print(f"  MLflow requests: {sum(REQUESTS.values())}, {sum(REQUEST_S.values()):.2f} s waiting on answers in all")
    for endpoint, n in REQUESTS.most_common():
        print(f"    {n:4d}  {REQUEST_S[endpoint]:6.2f} s  {endpoint}")


if __name__ == "__main__":
    sys.exit(main())
