"""Redis memory held by finished job records: 10,000 jobs through the job store, in a Redis of its own.

    .venv/bin/python bench/redis_memory.py            # 10,000 jobs
    .venv/bin/python bench/redis_memory.py --quick    # 500 jobs, a check that it runs

Each job is written as the service writes it: created queued, moved to running with its lease,
progress, metrics, MLflow link and worker, then succeeded with its model; its lease released.
Prints the memory per 10,000 finished jobs (used_memory before and after, same server).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis

from contract.clock import now
from contract.job_store import JobStore, LeaseGrant
from contract.params import TrainingParams


def finished_job(store: JobStore, seed: int) -> None:
    """One job's life as the API and a worker write it."""
    params = TrainingParams(seed=seed)
    job = store.create(params.model_dump(), params.total_steps)
    store.move(
        job.id,
        "running",
        lease=LeaseGrant('{"node": "worker-1", "pid": 1234, "attempt": 1}', 30_000),
        started_at=now(),
        phase="training",
        worker={"host": "worker-1", "pid": 1234},
    )
    store.redis.hincrby(store.key(job.id), "attempts", 1)
    store.update(
        job.id,
        mlflow={
            "experiment_id": "1",
            "run_id": "a" * 32,
            "url": f"http://127.0.0.1:5000/#/experiments/1/runs/{'a' * 32}",
        },
    )
    store.update(
        job.id,
        progress={"epoch": 100, "epochs": 100, "step": 66_600, "steps": 66_600, "fraction": 1.0},
        metrics={"loss": 0.0012, "epoch_loss": 0.0015, "echo_accuracy": 0.9998},
        device="/CPU:0",
    )
    store.move(
        job.id,
        "succeeded",
        finished_at=now(),
        phase=None,
        model={"uri": f"models:/echo-rnn/{seed + 1}", "name": "echo-rnn", "version": str(seed + 1)},
    )
    store.redis.delete(store.lease_key(job.id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    jobs = 500 if parser.parse_args().quick else 10_000
    directory = tempfile.mkdtemp()
    port = 20_000 + os.getpid() % 20_000
    server = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        store = JobStore(client)
        before = client.info("memory")["used_memory"]
        for seed in range(jobs):
            finished_job(store, seed)
        after = client.info("memory")["used_memory"]
        per_10k = (after - before) / jobs * 10_000 / 2**20
        print(
            f"{jobs} finished jobs: {(after - before) / 2**20:.1f} MiB of Redis memory "
            f"({(after - before) / jobs:.0f} bytes a job, records, indexes and counts)"
        )
        print(f"redis memory per 10,000 finished jobs: {per_10k:.1f} MiB")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
