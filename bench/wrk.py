"""Load from a second process on loopback: wrk (Debian's package), its report parsed."""

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class Load:
    """What wrk measured against one URL."""

    connections: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors

    def row(self) -> str:
        """One table row."""
        return f"{self.rps:>10.0f} req/s  p50 {self.p50_ms:>7.2f} ms  p99 {self.p99_ms:>7.2f} ms  errors {self.errors}"


def binary() -> str:
    """The wrk executable, or a clear error naming the package."""
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: make bench installs Debian's wrk (make system-deps)")
    return found


def lua_post(directory: Path, name: str, body: str) -> Path:
    """A wrk script that POSTs body as JSON."""
    path = directory / f"{name}.lua"
    path.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [==[{body}]==]\n'
    )
    return path


def run(url: str, connections: int, seconds: float, script: Path | None = None, threads: int = 2) -> Load:
    """Hold `connections` keep-alive connections busy for `seconds`; the latency distribution of the answers."""
    command = [
        binary(),
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
    ]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return parse(out, connections)


def parse(out: str, connections: int) -> Load:
    """wrk's text report → Load."""

    def latency(percent: str) -> float:
        m = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if not m:
            raise ValueError(f"no {percent}% latency in wrk's report:\n{out}")
        return float(m[1]) * UNITS[m[2]]

    requests = int(re.search(r"(\d+) requests in", out)[1])
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx[1]) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    return Load(connections, requests, rps, latency("50"), latency("99"), errors)
