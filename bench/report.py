"""The serving benchmark's results as Markdown, with the machine they were measured on."""

import os
import platform
import re
import statistics
import subprocess
from importlib.metadata import version
from pathlib import Path

from wrk import Load


def machine() -> str:
    """CPU, cores, memory, OS and the versions that matter, one line each."""
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    memory_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0].strip()
    return "\n".join(
        [
            f"- CPU: {cpu[1] if cpu else platform.processor()}, {len(os.sched_getaffinity(0))} cores usable",
            f"- memory: {memory_kib / 2**20:.0f} GiB; {platform.platform()}; Python {platform.python_version()}",
            f"- tensorflow-cpu {version('tensorflow-cpu')} (the workers), onnxruntime {version('onnxruntime')} (the API), "
            f"mlflow {version('mlflow')}, granian {version('granian')}, flask {version('flask')}, {wrk_version or 'wrk'}",
        ]
    )


def ratio(ours: float, theirs: float) -> str:
    """ours / theirs as 'N.Nx'; 'n/a' when the competitor completed no request in the time given (a loaded machine)."""
    return f"{ours / theirs:.1f}x" if theirs > 0 else "n/a (the competitor completed no request)"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _best(loads: dict[str, Load]) -> Load:
    return max(loads.values(), key=lambda load: load.rps)


def _load_row(name: str, load: Load) -> str:
    return f"| {name} | {load.rps:,.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} | {load.errors} |"


def markdown(r: dict) -> str:
    """Every part of the run, as tables."""
    lines = ["## Machine", "", machine(), ""]
    lines += [
        "## Predictions: one 100-bit sequence per request (wrk, keep-alive, loopback)",
        "",
        f"Our API runs {r['workers']} processes; every server serves the same registered model "
        f"(largest difference between their answers: {r['max_difference']:.1e}). Ratios are against "
        "mlflow models serve's better configuration.",
        "",
    ]
    for connections, group in r["predict"]["one"].items():
        mlflow = group["mlflow"]
        lines += [
            f"{connections} connections:",
            "",
            "| server | requests/s | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|",
            _load_row("our API, GET /predict", group["ours"]),
        ]
        lines += [
            _load_row(f"mlflow models serve ({label}), POST /invocations", load) for label, load in mlflow.items()
        ]
        lines += [_load_row("Flask ceiling: the echo in Python, no model", group["ceiling"])]
        share = f"{100 * group['ours'].rps / group['ceiling'].rps:.0f} %" if group["ceiling"].rps else "n/a"
        lines += [
            "",
            f"ratio: **{ratio(group['ours'].rps, _best(mlflow).rps)}**; share of the Flask ceiling: **{share}**",
            "",
        ]
    batch = r["predict"]["batch"]
    lines += [
        "## Batch: 1,000 sequences of 100 bits per request (2 connections)",
        "",
        "| server | sequences/s | p50 ms per batch | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, load in [("our API, POST /predict", batch["ours"])] + [
        (f"mlflow models serve ({label})", load) for label, load in batch["mlflow"].items()
    ]:
        lines.append(f"| {name} | {load.rps * 1000:,.0f} | {load.p50_ms:.1f} | {load.p99_ms:.1f} | {load.errors} |")
    lines += ["", f"ratio: **{ratio(batch['ours'].rps, _best(batch['mlflow']).rps)}**", ""]
    q = r["queue"]
    lines += [
        "## Queue (a warm, idle worker; small jobs one after another)",
        "",
        "| interval | median ms | max ms | jobs |",
        "|---|---:|---:|---:|",
        f"| POST /jobs returned → running | {_median(q['to_running_ms']):.0f} | {max(q['to_running_ms']):.0f} | "
        f"{len(q['to_running_ms'])} |",
        f"| last epoch → succeeded, model registered | {_median(q['to_succeeded_ms']):.0f} | "
        f"{max(q['to_succeeded_ms']):.0f} | {len(q['to_succeeded_ms'])} |",
        "",
    ]
    small = r["small"]
    lines += [
        f"## A small job ({small['params']['num_epochs']} epochs of {small['params']['total_series_length']:,} bits), "
        "median of each",
        "",
        "| | median s | max s | jobs |",
        "|---|---:|---:|---:|",
        f"| POST /jobs → succeeded, model registered, on a warm worker | {_median(small['job_s']):.2f} | "
        f"{max(small['job_s']):.2f} | {len(small['job_s'])} |",
        f"| the engine alone training it, in a warm process (compilation included) | {_median(small['engine_s']):.2f} | "
        f"{max(small['engine_s']):.2f} | {len(small['engine_s'])} |",
        "",
        f"overhead of the service: **{_median(small['job_s']) - _median(small['engine_s']):.2f} s**",
        "",
    ]
    p = r["params"]
    lines += [
        "## Whole job",
        "",
        f"{p['num_epochs']} epochs of {p['total_series_length']:,} bits (the tutorial's other settings), seed {p['seed']}.",
        "",
        "| | wall s |",
        "|---|---:|",
        f"| job through the API: POST → succeeded, MLflow run and model registered | {r['job_s']:.1f} |",
        f"| the tutorial's own program (TF1 session), same settings | {r['tutorial_s']:.1f} |",
        "",
        f"ratio: **{r['tutorial_s'] / r['job_s']:.1f}x**",
        "",
    ]
    m = r["loading"]
    lines += [
        "## Model loading",
        "",
        "| | value |",
        "|---|---:|",
        f"| first request for a version no API process holds (median of {len(m['first_ms'])}) | {_median(m['first_ms']):.0f} ms |",
        f"| the next request for it | {_median(m['next_ms']):.1f} ms |",
        f"| API process resident memory with one model | {m['first_mib']:.0f} MiB |",
        f"| memory per further cached model | {m['per_model_mib']:.1f} MiB |",
        "",
    ]
    return "\n".join(lines)
