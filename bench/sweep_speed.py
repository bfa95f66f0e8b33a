"""Sweeps against their competitors: the same trials as separate jobs, and a halving sweep against the same
trials in full and against Optuna's pruning.

    .venv/bin/python bench/sweep_speed.py            # 32 configurations (seeds 0-31, 5 epochs); a 64-trial search
    .venv/bin/python bench/sweep_speed.py --quick    # tiny configurations: only checks that it runs

Starts the stack as `make run` does with one worker process, warms it with a job and a sweep of the
same shapes (so neither side pays compilation in the measurement), then times (a) the configurations
submitted one after another as ordinary jobs, each waited for, and (b) the same configurations as one
sweep, from POST to the sweep's end with its best model registered.

Then a 64-trial random search (learning rate log-uniform 0.01-1, init tutorial or glorot, state size 4 or
8, 20 epochs, one training seed), from POST to its end, (c) with successive halving (r = 1, η = 4, the
defaults of Ray Tune's ASHA and Optuna's pruner factor: rungs after 1, 4 and 16 epochs) and (d) in full,
each after the same search as a warm-up (every program compiled), then timed three times in turn: the
medians are compared, as are those of three runs of (b). In a process of its own, the engine alone
(bench/halving_engine.py): our halving groups, the same masked instead of repacked, and Optuna's study
with its SuccessiveHalvingPruner (same r and η) running the same 64 trials one by one through the
engine. Compare ratios, never absolute times: the machine is shared.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.support import RedisServer, Stack, submit, submit_sweep, wait_status, wait_sweep  # noqa: E402

DONE = {"succeeded", "failed", "cancelled"}
REPEATS = 3  # timed runs of a sweep, and of each side of the halving comparison


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


SPACE = {
    "learning_rate": {"low": 0.01, "high": 1.0, "log": True},
    "init": {"values": ["tutorial", "glorot"]},
    "state_size": {"values": [4, 8]},
}


def search(quick: bool, seed: int, halving: bool) -> dict:
    """The 64-trial random search (8 tiny ones with --quick), with or without halving."""
    # One training seed for every trial (the search draws the rest): each side trains the very same 64 trials.
    params = {"num_epochs": 4, "total_series_length": 3_000, "seed": 7} if quick else {"num_epochs": 20, "seed": 7}
    scheduler = (
        {"type": "halving", "min_epochs": 1, "reduction": 2}
        if quick
        else {"type": "halving", "min_epochs": 1, "reduction": 4}  # Ray Tune ASHA's defaults (grace 1, factor 4)
    )
    body = {"params": params, "random": {"trials": 8 if quick else 64, "seed": seed, "space": SPACE}}
    return {**body, "scheduler": scheduler} if halving else body


def timed_sweep(api: str, body: dict) -> tuple[float, dict]:
    """Seconds from POST /sweeps to its end, and the sweep."""
    t0 = time.perf_counter()
    done = wait_sweep(api, submit_sweep(api, body)["id"], DONE, timeout=1800)
    assert done["status"] == "succeeded", done
    return time.perf_counter() - t0, done


def pruned_per_rung(sweep: dict) -> dict[int, int]:
    """How many trials were pruned at each rung."""
    out: dict[int, int] = {}
    for t in sweep["trials"]:
        if t["pruned"]:
            out[t["rung"]] = out.get(t["rung"], 0) + 1
    return dict(sorted(out.items()))


def halving_side_by_side(api: str, quick: bool) -> dict:
    """(c) and (d) through the API, each after its warm-up, timed REPEATS times in turn (their medians compared:
    one run of a few seconds moves by a second on a shared machine)."""
    for halving in (True, False):  # the same searches: every program the timed ones use is compiled
        timed_sweep(api, search(quick, 0, halving))
    times: dict[bool, list[float]] = {False: [], True: []}
    ended: dict[bool, dict] = {}
    for _ in range(1 if quick else REPEATS):
        for halving in (False, True):
            seconds, ended[halving] = timed_sweep(api, search(quick, 0, halving))
            times[halving].append(seconds)
    return {"full_s": times[False], "full": ended[False], "halving_s": times[True], "halved": ended[True]}


def engine_side_by_side(quick: bool) -> dict:
    """The engine alone, in a process of its own: our halving groups (repacked, masked) and Optuna's pruning."""
    bodies = [json.dumps(search(quick, 0, True))] * 2
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "halving_engine.py"), *bodies],
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def rounded(programs: list[list[list]]) -> list[list[tuple]]:
    """Each group's programs as (size, seconds of its first call)."""
    return [[(size, round(seconds, 2)) for size, seconds in group] for group in programs]


def seconds(runs: list[float]) -> str:
    """Each run's seconds, in the order they ran."""
    return ", ".join(f"{s:.1f}" for s in runs)


def report_halving(api_side: dict, engine: dict) -> None:
    """The halving lines: through the API against the full search, then the engine alone against Optuna."""
    full, halved = api_side["full"], api_side["halved"]
    best_full, best_halved = full["leaderboard"][0]["echo_accuracy"], halved["leaderboard"][0]["echo_accuracy"]
    trials = len(halved["trials"])
    print(f"\n{trials}-trial random search {json.dumps(SPACE)}, {halved['request']['params']}, one worker process:")
    full_s, halving_s = statistics.median(api_side["full_s"]), statistics.median(api_side["halving_s"])
    print(
        f"  in full ({len(full['groups'])} groups): median {full_s:.1f} s of {seconds(api_side['full_s'])}; best "
        f"held-out echo accuracy {best_full:.4f}"
    )
    print(
        f"  with halving {halved['request']['scheduler']}: median {halving_s:.1f} s of {seconds(api_side['halving_s'])}; "
        f"best {best_halved:.4f}; pruned per rung {pruned_per_rung(halved)}"
    )
    ours, masked, rival, whole = engine["ours"], engine["masked"], engine["optuna"], engine["full"]
    print(
        f"  the engine alone, one process: halving groups {ours['seconds']:.2f} s (best {ours['best']:.4f}, pruned "
        f"per rung {ours['pruned']}), the same masked instead of repacked {masked['seconds']:.2f} s, the groups in "
        f"full {whole['seconds']:.2f} s (best {whole['best']:.4f}); Optuna one by one {rival['seconds']:.2f} s "
        f"(best {rival['best']:.4f}, {rival['pruned']} of {trials} pruned)"
    )
    print(
        f"  programs per group (size, first call s), warm: {rounded(ours['programs'])}; in a cold process: "
        f"{rounded(engine['cold']['programs'])}"
    )
    print(
        f"halving sweep vs full sweep: {full_s / halving_s:.1f}x faster, "
        f"best held-out accuracy {best_halved:.4f} vs {best_full:.4f}"
    )
    print(f"halving sweep through the API vs Optuna with pruning: {rival['seconds'] / halving_s:.1f}x")
    print(f"halving sweep vs Optuna with pruning: {rival['seconds'] / ours['seconds']:.1f}x")


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
            sweeps = []
            for _ in range(1 if args.quick else REPEATS):
                t0 = time.perf_counter()
                done = sweep(stack.api, params, seeds)
                sweeps.append(time.perf_counter() - t0)
            sweep_s = statistics.median(sweeps)
            api_side = halving_side_by_side(stack.api, args.quick)
        finally:
            stack.stop()
            redis_server.stop()
    engine = engine_side_by_side(args.quick)
    print(f"\n{len(seeds)} configurations {params}, one worker process:")
    print(f"  as {len(seeds)} jobs, one after another: {jobs_s:7.1f} s ({jobs_s / len(seeds):.2f} s a job)")
    print(
        f"  as one sweep ({len(done['groups'])} group): median {sweep_s:.1f} s of {seconds(sweeps)}; best trial "
        f"{done['best']['trial']}, "
        f"held-out echo accuracy {done['leaderboard'][0]['echo_accuracy']:.4f}"
    )
    print(f"sweep speedup vs sequential jobs: {jobs_s / sweep_s:.1f}x")
    report_halving(api_side, engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
