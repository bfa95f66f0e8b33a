"""make bench runs end to end on a tiny configuration (a check that it runs, not a timing assertion)."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ratio(lines: list[str], prefix: str) -> float:
    """The N.N of the line 'prefix N.Nx'."""
    found = [line for line in lines if line.startswith(prefix)]
    assert found, f"no line starts with {prefix!r}"
    return float(found[-1].removeprefix(prefix).removesuffix("x"))


def test_make_bench_runs_both_benchmarks_and_prints_their_ratios():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(
        ["make", "bench", "BENCH_ARGS=--quick"], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    # Training: the three contestants, serving in process, the ratios.
    for contestant in ("(a) tutorial TF1 session", "(b) Keras SimpleRNN fit", "(c) engine"):
        assert any(line.startswith(contestant) for line in lines), done.stdout
    for length in (20, 100, 1000):
        assert any(line.strip().startswith(f"length {length:>5}:") for line in lines), done.stdout
    assert ratio(lines, "train speedup vs seed reference: ") > 0
    assert any(
        line.startswith("learns the echo (an epoch's loss ≤ 0.01) within") and "init=glorot" in line for line in lines
    )
    assert any(line.startswith("redis memory per 10,000 finished jobs: ") for line in lines), done.stdout
    # Checkpoints: what changed beside the whole checkpoint, each with Redis's memory, AOF and latency.
    assert ratio(lines, "largest checkpoint write, the whole checkpoint's over ours: ") > 0
    assert sum(line.strip().startswith("LATENCY LATEST: ") for line in lines) == 2, done.stdout
    # Records: both sides of the churn, both listings, the ratios.
    assert ratio(lines, "redis growth without the budget over with it: ") > 0
    assert any(line.startswith("target churn: Redis grew ") for line in lines), done.stdout
    assert sum(line.startswith("| GET /") for line in lines) == 4 and any(
        line.startswith("listing cost of A") for line in lines
    )
    assert ratio(lines, "sweep speedup vs sequential jobs: ") > 0
    halving = [line for line in lines if line.startswith("halving sweep vs full sweep: ")]
    assert halving and re.fullmatch(
        r"halving sweep vs full sweep: \d+\.\dx faster, best held-out accuracy "
        r"\d\.\d{4} vs \d\.\d{4}",
        halving[-1],
    ), halving
    assert ratio(lines, "halving sweep vs Optuna with pruning: ") > 0
    assert ratio(lines, "halving sweep through the API vs Optuna with pruning: ") >= 0
    overhead = [line for line in lines if line.startswith("sweep overhead: ")]
    assert overhead and re.fullmatch(r"sweep overhead: \d+\.\d s besides \d+\.\d s of training", overhead[-1]), overhead
    # Serving: both servers loaded at 8 and 64 connections without an error, batches, queue, job, loading.
    text = done.stdout
    assert "largest difference between their answers" in text
    for connections in (8, 64):
        table = text.split(f"{connections} connections:")[1].split("ratio:")[0]
        rows = re.findall(
            r"^\| (our API, GET /predict|mlflow models serve \(\d+ workers?\), POST /invocations) \| ([\d,]+) \|.* \| (\d+) \|$",
            table,
            re.M,
        )
        assert rows[0][0] == "our API, GET /predict" and len(rows) >= 2, table
        assert "mlflow models serve (1 worker), POST /invocations" in [name for name, _, _ in rows], table
        assert all(int(rps.replace(",", "")) > 0 and errors == "0" for _, rps, errors in rows), table
    assert ratio(lines, "job speedup vs seed reference: ") > 0 and "overhead of the service" in text
    for heading in ("## Batch", "## Queue", "## A small job", "## Whole job", "## Model loading", "## Machine"):
        assert heading in text
    assert "POST /jobs returned → running" in text and "memory per further cached model" in text
    for target in (
        "mixed POST /predict (100,000 bits + 999 × 1 bit), warm: ",
        "first request for a version not loaded: ",
        "champion while another client cycles nine versions: ",
        "API processes' resident memory with the champion: ",
        "API start to /healthz: ",
    ):
        assert any(line.startswith(target) for line in lines), (target, text)
    ceiling = [line for line in lines if line.startswith("predict share of the Flask ceiling: ")]
    assert ceiling and ceiling[-1].endswith(" %") and float(ceiling[-1].split(": ")[1].removesuffix(" %")) > 0
    assert (
        lines[-1].startswith("predict speedup vs mlflow serve: ")
        and ratio(lines, "predict speedup vs mlflow serve: ") > 0
    )
