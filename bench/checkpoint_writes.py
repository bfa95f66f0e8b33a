"""A 32-trial group's checkpoints near the step bound, in a Redis of its own with an append-only file:
pieces (only what changed, worker/attempt/checkpoints.py) beside the whole checkpoint rewritten each time.

    .venv/bin/python bench/checkpoint_writes.py            # 32 trials, up to 1,995,000 steps each
    .venv/bin/python bench/checkpoint_writes.py --quick    # 4 trials, up to 100,000 steps: a check that it runs

The group stands for 32 trials of the tutorial's shapes trained at the engine's K = 32 speed (8,313 steps/s,
docs/benchmarks.md), offering a checkpoint every 2 s (16,626 new steps each). Its checkpoints are real
GroupCheckpoints (weights, optimizer, state, random streams, each step's loss and each epoch's results),
the losses drawn at random. Pieces: the history up to the last 2 % of the bound is saved at full speed,
then the last saves, one every 2 s, are watched. Whole: the same last saves, each the whole checkpoint in
one SET through the fence, as before. For each, a client renews a lease (SET PX, as a worker does) every
10 ms meanwhile. Prints the largest write, Redis's used_memory, the append-only file's size, LATENCY LATEST
and the renewals' latency, then the ratio of the largest writes.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import redis

from contract.fence import Fence, Step
from contract.job_store import JobStore, LeaseGrant
from contract.params import TrainingParams
from tests.support import Recording
from worker.attempt.checkpoints import Checkpoints
from worker.engine.checkpoint import Checkpoint, GroupCheckpoint

STEPS_PER_S = 8_313  # the engine, 32 models of the tutorial's shapes (docs/benchmarks.md)
EVERY_S = 2.0  # the engine offers a checkpoint at least this often


class Renewals:
    """A worker's lease renewals every 10 ms, timed, from a thread."""

    def __init__(self, port: int):
        self.client, self._stop = redis.Redis(port=port), threading.Event()
        self.times: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            t0 = time.perf_counter()
            self.client.set("bench:lease:other", "token", px=30_000)
            self.times.append(time.perf_counter() - t0)

    def __enter__(self) -> "Renewals":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        ms = np.array(self.times) * 1000
        return f"p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.1f} ms"


class Server:
    """redis-server with an append-only file (fsync every second, as compose and make run keep it)."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp())
        self.port = 20_000 + (os.getpid() * 7 + int(time.time())) % 20_000
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(self.directory),
                "--latency-monitor-threshold",
                "5",
            ],
            stdout=subprocess.DEVNULL,
        )
        self.client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

    def aof_bytes(self) -> int:
        """The append-only files' size: the base (rewritten) and the increments since."""
        return sum(f.stat().st_size for f in self.directory.rglob("*") if f.is_file())

    def rewrites(self) -> int:
        return int(self.client.info("persistence")["aof_rewrites"])

    def latency(self) -> str:
        events = self.client.execute_command("LATENCY", "LATEST")
        return ", ".join(f"{e[0].decode()} {e[2]} ms (max {e[3]} ms)" for e in events) or "no event over 5 ms"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def group_at(step: int, trials: int, history: np.ndarray) -> GroupCheckpoint:
    """trials models of the tutorial's shapes at step, their losses views of one random history."""
    params = TrainingParams()
    shapes = {
        "W": (params.state_size + 1, params.state_size),
        "b": (params.state_size,),
        "W2": (params.state_size, params.num_classes),
        "b2": (params.num_classes,),
    }
    epochs, rng = step // params.steps_per_epoch, np.random.default_rng(step)
    state = np.random.default_rng(0).bit_generator.state
    return GroupCheckpoint(
        [
            Checkpoint(
                epoch=epochs,
                done=step - epochs * params.steps_per_epoch,
                step=step,
                rng_state=state,
                eval_rng_state=state,
                state=rng.random((params.batch_size, params.state_size), np.float32),
                weights={n: rng.random(s, np.float32) for n, s in shapes.items()},
                accumulators={n: rng.random(s, np.float32) for n, s in shapes.items()},
                losses=history[:step],
                epoch_losses=rng.random(epochs).tolist(),
                echo_accuracy=rng.random(epochs).tolist(),
            )
            for _ in range(trials)
        ],
        [None] * trials,
    )


def attempt(store: JobStore) -> Fence:
    job = store.create({"num_epochs": 1}, steps=1)
    store.move(job.id, "running", lease=LeaseGrant("bench-attempt", 3_600_000))
    return Fence("bench-attempt", (store.lease_key(job.id),))


def watched(server: Server, label: str, saves: list, save) -> int:
    """Run saves one every EVERY_S, renewals beside them; print what Redis went through; the largest write."""
    while any(int(server.client.info("persistence")[k]) for k in ("aof_rewrite_in_progress", "aof_rewrite_scheduled")):
        time.sleep(0.2)  # a rewrite begun by the saves before: not this window's
    time.sleep(1)
    server.client.execute_command("LATENCY", "RESET")
    aof_before, rewrites = server.aof_bytes(), server.rewrites()
    sizes: list[int] = []
    with Renewals(server.port) as renewals:
        for checkpoint in saves:
            started = time.monotonic()
            sizes += save(checkpoint)
            time.sleep(max(0.0, EVERY_S - (time.monotonic() - started)))
    memory = server.client.info("memory")["used_memory"]
    print(
        f"{label}: {len(saves)} saves near the bound, {len(sizes)} writes, largest {max(sizes) / 1e6:.2f} MB, "
        f"{sum(sizes) / len(saves) / 1e6:.2f} MB a save"
    )
    print(
        f"  redis used_memory {memory / 2**20:.0f} MiB; append-only files {aof_before / 2**20:.0f} MiB before, "
        f"{server.aof_bytes() / 2**20:.0f} MiB after, {server.rewrites() - rewrites} rewrites meanwhile"
    )
    print(f"  LATENCY LATEST: {server.latency()}")
    print(f"  lease renewals meanwhile: {renewals.summary()}")
    return max(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    trials, bound, last = (4, 100_000, 3) if quick else (32, 1_995_000, 10)
    per_save = int(STEPS_PER_S * EVERY_S)
    history = np.random.default_rng(1).random(bound, np.float32)
    steps = list(range(per_save, bound + 1, per_save))
    print(
        f"{trials} trials, a checkpoint every {per_save:,} steps up to step {steps[-1]:,}; "
        f"the last {last} watched, one every {EVERY_S:.0f} s"
    )

    server = Server()
    try:
        store = JobStore(server.client, "bench")
        recording = store.fenced = Recording(store)
        fence, saver = attempt(store), Checkpoints(store, "group:bench:0")
        for step in steps[:-last]:  # the history so far, at full speed
            saver.save(fence, group_at(step, trials, history))

        def pieces(checkpoint: GroupCheckpoint) -> list[int]:
            before = len(recording.sizes)
            saver.save(fence, checkpoint)
            return recording.sizes[before:]

        ours = watched(server, "pieces (what changed)", [group_at(s, trials, history) for s in steps[-last:]], pieces)
    finally:
        server.stop()

    server = Server()
    try:
        store = JobStore(server.client, "bench")
        fence, key = attempt(store), store.checkpoint_key("group:bench:0")

        def whole(checkpoint: GroupCheckpoint) -> list[int]:
            data = checkpoint.to_bytes()
            store.fenced.run(Step(fence).set(key, data, 7 * 24 * 3600))
            return [len(data)]

        theirs = watched(
            server,
            "whole checkpoint each save (before)",
            [group_at(s, trials, history) for s in steps[-min(last, 5) :]],
            whole,
        )
    finally:
        server.stop()
    print(f"largest checkpoint write, the whole checkpoint's over ours: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
