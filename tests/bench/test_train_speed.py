"""The training benchmark runs end to end (a check that it runs, not a timing assertion)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_bench_runs_and_prints_the_speedup():
    done = subprocess.run(
        [sys.executable, "bench/train_speed.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for contestant in ("(a) tutorial TF1 session", "(b) Keras SimpleRNN fit", "(c) engine"):
        assert any(line.startswith(contestant) for line in lines), done.stdout
    for length in (20, 100, 1000):
        assert any(line.strip().startswith(f"length {length:>5}:") for line in lines), done.stdout
    assert any(line.startswith("Keras speedup vs seed reference: ") for line in lines)
    last = lines[-1]
    assert last.startswith("train speedup vs seed reference: ") and last.endswith("x"), done.stdout
    float(last.removeprefix("train speedup vs seed reference: ").removesuffix("x"))
