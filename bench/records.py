"""What one token's records cost the others: a minute of churn, and listings after a long history.

    .venv/bin/python bench/records.py            # about 5 minutes: two minutes of churn, then the listings
    .venv/bin/python bench/records.py --quick    # a few seconds of each: only checks that it runs

Churn: a Redis as compose runs it (append-only file, maxmemory 768mb, noeviction) and the API as `make
run` starts it (granian, two processes, the default limits) with two tokens. Token A posts sweeps of
256 trials and deletes each at once, from two threads, for a minute; token B asks /healthz meanwhile.
Measured: Redis's growth (used_memory after minus before) and B's /healthz latency, side by side with
the same minute against the API without a records budget (MAX_RECORDS_PER_HOUR=0: the service before
it). No worker runs: the groups' messages stay queued (about 1 KiB each, counted in the growth).

Listings: a history written through the stores directly (120 sweeps of 256 trials, all cancelled but
the newest two, whose trials ran; and one running job), then GET /jobs?status=running&limit=1 and GET
/sweeps?limit=100 timed over HTTP for token A, side by side with token B, whose history is one sweep and
one running job: the ratio says how much the history costs. The very first listing is shown apart:
written behind the API's back, the finished sweeps' tallies are summed then (and kept; a DELETE keeps
its sweep's at once). Then the per-owner status index is dropped
and rebuilt as an API does at its start for records written before it existed.
Compare ratios rather than absolute times: the machine is shared.
"""

import argparse
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from contract.clock import now  # noqa: E402
from contract.job_store import DEFAULT_PREFIX, JobStore  # noqa: E402
from contract.sweep import SweepRequest, group  # noqa: E402
from contract.sweep_store import SweepStore  # noqa: E402
from service.auth import client_of  # noqa: E402
from tests.faults_support import Api  # noqa: E402
from tests.support import RedisServer, free_port  # noqa: E402

A, B = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
TINY = {"num_epochs": 1, "total_series_length": 1000}


def bounded_redis(directory: Path) -> RedisServer:
    """A Redis as compose runs it."""
    server = RedisServer(directory, appendonly=True).start()
    client = redis.Redis(port=server.port)
    client.config_set("maxmemory", "768mb")
    client.config_set("maxmemory-policy", "noeviction")
    return server


def api(directory: Path, redis_url: str, **settings: str) -> Api:
    """docker/bin/api with two processes and the two tokens; MLflow is never asked."""
    server = Api(directory, redis_url, f"http://127.0.0.1:{free_port()}", API_TOKENS=f"{A},{B}", **settings)
    server.env["API_WORKERS"] = "2"
    server.start()
    return server


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def churn(url: str, stop: threading.Event, counts: dict[str, int]) -> None:
    """Token A: POST a sweep of 256 trials, DELETE it, again, until stop."""
    body = {"params": TINY, "grid": {"seed": list(range(256))}}
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {A}"
    while not stop.is_set():
        made = session.post(f"{url}/sweeps", json=body, timeout=60)
        counts[str(made.status_code)] = counts.get(str(made.status_code), 0) + 1
        if made.status_code == 202:
            session.delete(f"{url}/sweeps/{made.json()['id']}", timeout=60)
        elif made.status_code == 429:
            time.sleep(0.05)


def probe(url: str, stop: threading.Event, seconds: list[float]) -> None:
    """Token B: GET /healthz every 50 ms until stop, each answer's latency."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {B}"
    while not stop.is_set():
        t0 = time.perf_counter()
        assert session.get(f"{url}/healthz", timeout=30).status_code == 200
        seconds.append(time.perf_counter() - t0)
        time.sleep(0.05)


def churn_minute(directory: Path, seconds: float, budget: str) -> dict:
    """One side: a fresh Redis and API, token A churning for seconds while token B's /healthz is timed."""
    server = bounded_redis(directory / "redis")
    client = redis.Redis(port=server.port)
    service = api(directory, server.url, MAX_RECORDS_PER_HOUR=budget)
    try:
        before = client.info("memory")["used_memory"]
        stop = threading.Event()
        counts: dict[str | int, int] = {}
        latencies: list[float] = []
        threads = [threading.Thread(target=churn, args=(service.url, stop, counts)) for _ in range(2)]
        threads.append(threading.Thread(target=probe, args=(service.url, stop, latencies)))
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        after = client.info("memory")["used_memory"]
        return {
            "made": counts.get("202", 0),
            "refused": counts.get("429", 0),
            "growth": (after - before) / 2**20,
            "records": client.zcard(JobStore(client).index_key()),
            "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000,
            "probes": len(latencies),
        }
    finally:
        service.kill()
        server.stop()


def history(store: SweepStore, owner: str, sweeps: int, trials: int) -> None:
    """owner's past: sweeps of trials written as the API writes them, all cancelled but the newest two, whose trials
    ran (half succeeded with an evaluation); and one running job."""
    request = SweepRequest.model_validate({"params": TINY, "grid": {"seed": list(range(trials))}})
    params = request.trials()
    for s in range(sweeps):
        sweep = store.create(request, params, group(params, 32), owner=owner)
        ran = s >= sweeps - 2
        for t in sweep.trials:
            if ran:
                store.jobs.move(t.job_id, "running", started_at=now())
                store.jobs.update(
                    t.job_id,
                    progress={"epoch": 1, "epochs": 1, "step": 9, "steps": 9, "fraction": 1.0},
                    evaluation={"echo_accuracy": 0.5 + t.trial / (4 * trials), "loss": 0.1},
                )
            store.jobs.move(t.job_id, "succeeded" if ran and t.trial % 2 else "cancelled", finished_at=now())
        store.move(sweep.id, "cancelled", finished_at=now())
    job = store.jobs.create(TINY, 9, owner=owner)
    store.jobs.move(job.id, "running", started_at=now())


def timed(url: str, token: str, path: str, times: int) -> tuple[list[float], int, float]:
    """Seconds of each of times GETs of path, the size of the last answer, and the seconds of the very first."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    t0 = time.perf_counter()
    session.get(f"{url}{path}", timeout=60).raise_for_status()  # the first: finished sweeps' tallies summed and kept
    first = time.perf_counter() - t0
    session.get(f"{url}{path}", timeout=60).raise_for_status()  # each API process warm
    walls, size = [], 0
    for _ in range(times):
        t0 = time.perf_counter()
        resp = session.get(f"{url}{path}", timeout=60)
        walls.append(time.perf_counter() - t0)
        resp.raise_for_status()
        size = len(resp.content)
    return walls, size, first


def listings(directory: Path, sweeps: int, trials: int, times: int) -> None:
    """Token A's history against token B's: the two listings timed over HTTP, then the index rebuilt."""
    server = bounded_redis(directory / "redis-listings")
    client = redis.Redis(port=server.port)
    store = SweepStore(JobStore(client))
    t0 = time.perf_counter()
    history(store, client_of(A), sweeps, trials)
    history(store, client_of(B), 1, trials)
    written = client.zcard(store.jobs.index_key())
    print(
        f"\nhistory: {written:,} jobs ({sweeps + 1} sweeps of {trials} trials and a job each for A and B) written in "
        f"{time.perf_counter() - t0:.1f} s; Redis {client.info('memory')['used_memory'] / 2**20:.0f} MiB"
    )
    service = api(directory, server.url)
    try:
        print(
            "\n| listing | token | history (jobs) | first ms | p50 ms | p99 ms | answer bytes |\n|---|---|---|---|---|---|---|"
        )
        ratios = []
        for path in ("/jobs?status=running&limit=1", "/sweeps?limit=100"):
            rows, sizes = {}, {}
            for name, token, jobs in (("A", A, sweeps * trials + 1), ("B", B, trials + 1)):
                walls, size, first = timed(service.url, token, path, times)
                rows[name], sizes[name] = walls, size
                print(
                    f"| GET {path} | {name} | {jobs:,} | {first * 1000:.1f} | {statistics.median(walls) * 1000:.1f} | "
                    f"{percentile(walls, 99) * 1000:.1f} | {size:,} |"
                )
            ratios.append(statistics.median(rows["A"]) / statistics.median(rows["B"]))
            print(
                f"target {path}: p99 {percentile(rows['A'], 99) * 1000:.1f} ms for A "
                f"(≤ {50 if 'jobs' in path else 200} ms)"
                + (f", {sizes['A'] / 2**20:.3f} MiB (≤ 1 MiB)" if "sweeps" in path else "")
            )
        print(
            f"listing cost of A's history over B's (median, GET /jobs, GET /sweeps): {ratios[0]:.2f}x, {ratios[1]:.2f}x"
        )
    finally:
        service.kill()
    # Records from before the index: its keys and marker dropped, then rebuilt as an API's start does.
    client.delete(*client.keys(f"{DEFAULT_PREFIX}:owner:*:status:*"), f"{DEFAULT_PREFIX}:index:owner-status")
    t0 = time.perf_counter()
    indexed = JobStore(client).build_owner_index()
    print(
        f"owner-status index rebuilt for {indexed:,} records in {time.perf_counter() - t0:.2f} s (once, at an API's start)"
    )
    server.stop()


def main(argv: list[str] | None = None) -> int:
    """Churn with and without the budget, then the listings; the ratios last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds of each: only checks that it runs")
    args = parser.parse_args(argv)
    seconds, sweeps, trials, times = (5, 4, 16, 5) if args.quick else (60, 120, 256, 100)
    with tempfile.TemporaryDirectory(prefix="echo-rnn-records-bench-") as tmp:
        directory = Path(tmp)
        print(
            f"churn: token A posts and deletes sweeps of 256 trials for {seconds} s (two threads); token B asks "
            "/healthz every 50 ms\n"
        )
        print(
            "| API | sweeps made | refused (429) | job records | Redis growth MiB | B /healthz p50 ms | p99 ms |\n"
            "|---|---|---|---|---|---|---|"
        )
        sides = {}
        for name, budget in (("records budget (MAX_RECORDS_PER_HOUR=4096)", "4096"), ("no budget (0)", "0")):
            side = sides[budget] = churn_minute(directory / budget, seconds, budget)
            print(
                f"| {name} | {side['made']} | {side['refused']} | {side['records']:,} | {side['growth']:.1f} | "
                f"{side['p50']:.1f} | {side['p99']:.1f} |",
                flush=True,
            )
        print(
            f"target churn: Redis grew {sides['4096']['growth']:.1f} MiB (≤ 32 MiB), B's /healthz p99 "
            f"{sides['4096']['p99']:.1f} ms (≤ 100 ms)"
        )
        listings(directory, sweeps, trials, times)
        print(
            f"redis growth without the budget over with it: {sides['0']['growth'] / max(sides['4096']['growth'], 0.01):.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
