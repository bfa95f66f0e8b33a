"""A sweep against the same trials as separate jobs, through the API on one warm worker.

    .venv/bin/python bench/sweep_speed.py            # 32 configurations (seeds 0-31, 5 epochs, the tutorial's defaults)
    .venv/bin/python bench/sweep_speed.py --quick    # 4 tiny configurations: only checks that it runs

Starts the stack as `make run` does with one worker process, warms it with a job and a sweep of the
same shapes (so neither side pays compilation in the measurement), then times (a) the configurations
submitted one after another as ordinary jobs, each waited for, and (b) the same configurations as one
sweep, from POST to the sweep's end with its best model registered. The last line is the ratio.
Compare ratios, never absolute times: the machine is shared.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.support import RedisServer, Stack, submit, submit_sweep, wait_status, wait_sweep  # noqa: E402

DONE = {"succeeded", "failed", "cancelled"}


def sweep(api: str, params: dict, seeds: list[int]) -> dict:
    """POST /sweeps over seeds and wait for its end."""
    done = wait_sweep(api, submit_sweep(api, {"params": params, "grid": {"seed": seeds}})["id"], DONE, timeout=1800)
    assert done["status"] == "succeeded", done
    return done


def jobs(api: str, params: dict, seeds: list[int]) -> list[dict]:
    """The same configurations as ordinary jobs, one after another."""
    out = []
    for seed in seeds:
        done = wait_status(api, submit(api, **params, seed=seed)["id"], DONE, timeout=600)
        assert done["status"] == "succeeded", done
        out.append(done)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run both sides on one stack and print the ratio last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 tiny configurations: only checks it runs")
    args = parser.parse_args(argv)
    params = {"num_epochs": 2, "total_series_length": 3_000} if args.quick else {"num_epochs": 5}
    seeds = list(range(4 if args.quick else 32))
    with tempfile.TemporaryDirectory(prefix="echo-rnn-sweep-bench-") as tmp:
        redis_server = RedisServer(Path(tmp) / "redis").start()
        stack = Stack(ROOT, Path(tmp), redis_server.url, concurrency=1)
        stack.env.update(RATE_LIMIT_JOBS="", WORKER_MAX_TASKS_PER_CHILD="0")
        try:
            stack.start()
            print(f"stack up (API {stack.api}); warming the worker", flush=True)
            jobs(stack.api, params, [1000])
            sweep(stack.api, params, [1000 + s for s in seeds])
            t0 = time.perf_counter()
            jobs(stack.api, params, seeds)
            jobs_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            done = sweep(stack.api, params, seeds)
            sweep_s = time.perf_counter() - t0
        finally:
            stack.stop()
            redis_server.stop()
    print(f"\n{len(seeds)} configurations {params}, one worker process:")
    print(f"  as {len(seeds)} jobs, one after another: {jobs_s:7.1f} s ({jobs_s / len(seeds):.2f} s a job)")
    print(
        f"  as one sweep ({len(done['groups'])} group): {sweep_s:7.1f} s; best trial {done['best']['trial']}, "
        f"held-out echo accuracy {done['leaderboard'][0]['echo_accuracy']:.4f}"
    )
    print(f"sweep speedup vs sequential jobs: {jobs_s / sweep_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
