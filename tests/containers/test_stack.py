"""The containers built and run: the compose stack (CPU variant) up and healthy, a job trained through
the API with a token and read back from MLflow with its login, the worker container killed mid-job,
Redis's container restarted with a job queued, and three worker containers sharing a sweep while one
is cut off from the network past its lease. Real containers, reached through the ports compose
publishes on 127.0.0.1 only."""

import json
import re
import subprocess
import time

import numpy as np
import pytest
import requests

from tests.containers.compose import SERVICES, ComposeStack

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1800)]

FINISHED = {"succeeded", "failed", "cancelled"}
# A job that learns the echo in a few seconds (seed 1 reaches a loss under 0.01 in 5 epochs).
QUICK = dict(num_epochs=5, seed=1, init="glorot")  # held-out echo accuracy 1.0
# About 6 s of training with checkpoints every 2 s: a kill at 40 % finds one.
RESUMABLE = dict(num_epochs=60, total_series_length=200_000, truncated_backprop_length=64, seed=31)
# Each group of the partition's sweep trains for about 12 s alone: cut off at 30 %, most of it is left.
PARTITIONED = dict(num_epochs=120, total_series_length=200_000, truncated_backprop_length=64, seed=41)
GB = 10**9  # as docker images counts
TF_LOADING = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called|I0000 \S+ +\d+ port\.cc:\d+\] oneDNN custom operations are on)"
)


def test_every_service_is_healthy_within_its_start_period(compose_stack: ComposeStack):
    config = compose_stack.config()
    for service, seconds in compose_stack.figures["container_start_to_healthy_s"].items():
        check = config["services"][service]["healthcheck"]
        start_period = parse_duration(check["start_period"])
        assert seconds <= start_period, (
            f"{service} healthy after {seconds:.0f} s, its start period is {start_period:.0f} s"
        )
    assert set(compose_stack.figures["container_start_to_healthy_s"]) == set(SERVICES)


def test_images_are_small_enough(compose_stack: ComposeStack):
    sizes = compose_stack.figures["image_bytes"]
    # The API serves ONNX graphs: no TensorFlow, pandas or matplotlib (on the 371 MB stand-in base).
    assert sizes["api"] <= 0.7 * GB, f"api image {sizes['api'] / GB:.2f} GB"
    # The worker carries TensorFlow for the CPU and onnx (27 MB) to write each model's graph.
    assert sizes["worker"] <= 1.85 * GB, f"CPU worker image {sizes['worker'] / GB:.2f} GB"
    assert sizes["mlflow"] <= 1.26 * GB, f"mlflow image {sizes['mlflow'] / GB:.2f} GB"


def test_nothing_but_the_api_mlflow_and_flower_is_published(compose_stack: ComposeStack):
    for service in SERVICES:
        ports = compose_stack.inspect(service)["NetworkSettings"]["Ports"] or {}
        published = {inner: [(b["HostIp"], b["HostPort"]) for b in bound] for inner, bound in ports.items() if bound}
        expected = {
            "api": ("8000/tcp", compose_stack.ports["api"]),
            "mlflow": ("5000/tcp", compose_stack.ports["mlflow"]),
            "flower": ("5555/tcp", compose_stack.ports["flower"]),
        }.get(service)
        if expected is None:
            assert published == {}, f"{service} is published: {published}"
        else:
            assert published == {expected[0]: [("127.0.0.1", str(expected[1]))]}, (service, published)


def test_logins(compose_stack: ComposeStack):
    """The API wants its token, MLflow and Flower their logins; health checks stay open."""
    api, mlflow, flower = compose_stack.api, compose_stack.mlflow, compose_stack.flower
    timeout = 60  # a login is checked by a slow hash: seconds on a loaded 2-core machine
    assert requests.get(f"{api}/jobs", timeout=timeout).status_code == 401
    assert requests.get(f"{api}/jobs", headers=compose_stack.bearer(), timeout=timeout).status_code == 200
    search = f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=10"
    assert requests.get(search, timeout=timeout).status_code == 401
    assert (
        requests.get(search, auth=(compose_stack.mlflow_login[0], "wrong-password-x"), timeout=timeout).status_code
        == 401
    )
    assert requests.get(search, auth=compose_stack.mlflow_login, timeout=timeout).status_code == 200
    assert requests.get(f"{mlflow}/", timeout=timeout).status_code == 401, "the UI asks people to log in"
    assert requests.get(f"{mlflow}/", auth=compose_stack.mlflow_login, timeout=timeout).status_code == 200
    assert requests.get(f"{mlflow}/health", timeout=timeout).status_code == 200
    assert requests.get(f"{flower}/", timeout=timeout).status_code == 401
    assert requests.get(f"{flower}/workers", auth=compose_stack.flower_login, timeout=timeout).status_code == 200
    assert requests.get(f"{flower}/healthcheck", timeout=timeout).status_code == 200
    # The service account the API and workers use is no admin: it cannot create users.
    service = (compose_stack.settings["MLFLOW_SERVICE_USERNAME"], compose_stack.settings["MLFLOW_SERVICE_PASSWORD"])
    created = requests.post(
        f"{mlflow}/api/2.0/mlflow/users/create",
        json={"username": "intruder", "password": "x" * 16},
        auth=service,
        timeout=timeout,
    )
    assert created.status_code == 403, created.text


@pytest.fixture(scope="module")
def trained(compose_stack: ComposeStack) -> dict:
    started = time.monotonic()
    job = compose_stack.submit(**QUICK)
    done = compose_stack.wait_job(job["id"], FINISHED, timeout=300)
    compose_stack.figures["quick_job_s"] = round(time.monotonic() - started, 1)
    assert done["status"] == "succeeded", done
    return done


def test_a_job_trained_through_the_api_predicts(compose_stack: ComposeStack, trained: dict):
    rng = np.random.default_rng(5)
    sequences = ["".join(map(str, rng.integers(0, 2, 200))) for _ in range(20)]
    resp = requests.post(
        f"{compose_stack.api}/predict",
        json={"sequences": sequences, "model": trained["id"]},
        headers=compose_stack.bearer(),
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"]["version"] == trained["model"]["version"]
    step = body["results"][0]["echo_step"]
    right = sum(r["echo"][step:] == s[:-step] for r, s in zip(body["results"], sequences))
    assert right >= 19, f"{right} of 20 sequences echoed exactly"
    # A job id names a model for the token that submitted the job only.
    one = requests.get(
        f"{compose_stack.api}/predict",
        params={"sequence": "0110100111010", "model": trained["id"]},
        headers=compose_stack.bearer(),
        timeout=60,
    )
    # The first echo_step outputs echo nothing yet: the rest is the input, echo_step later.
    assert one.status_code == 200 and one.json()["echo"][3:] == "0110100111", one.text


def test_the_mlflow_run_is_read_back_through_mlflows_port(compose_stack: ComposeStack, trained: dict):
    run_id = trained["mlflow"]["run_id"]
    run = compose_stack.mlflow_get("/api/2.0/mlflow/runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["num_epochs"] == "5" and params["seed"] == "1" and params["echo_step"] == "3"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["job_id"] == trained["id"]
    history = compose_stack.loss_history(run_id)
    assert_each_bucket_once(history, trained["progress"]["steps"])
    assert history[-1][1] < 0.05
    files = {
        f["path"] for f in compose_stack.mlflow_get("/api/2.0/mlflow/artifacts/list", run_id=run_id).get("files", [])
    }
    assert "echo_figure.png" in files and any(f.startswith("loss_history.csv") for f in files), files
    figure = requests.get(
        f"{compose_stack.mlflow}/get-artifact",
        params={"path": "echo_figure.png", "run_uuid": run_id},
        auth=compose_stack.mlflow_login,
        timeout=30,
    )
    assert figure.status_code == 200 and figure.content.startswith(b"\x89PNG"), figure.status_code
    version = compose_stack.mlflow_get(
        "/api/2.0/mlflow/model-versions/get", name=trained["model"]["name"], version=trained["model"]["version"]
    )["model_version"]
    assert version["run_id"] == run_id and version["status"] == "READY"
    # The run link in the job points at the UI as published.
    assert trained["mlflow"]["url"].startswith(f"{compose_stack.mlflow}/#/experiments/")


def test_compose_logs_are_json_lines(compose_stack: ComposeStack, trained: dict):
    for service in ("api", "worker"):
        lines = [re.split(r"\s\|\s", line, maxsplit=1)[-1] for line in compose_stack.logs(service).splitlines()]
        lines = [line for line in lines if line.strip() and not line.startswith("Attaching to")]
        # TensorFlow's C++ runtime writes two lines to stderr as it loads, before any log setting
        # applies (TF_CPP_MIN_LOG_LEVEL included): the only lines that are not JSON.
        lines = [line for line in lines if not TF_LOADING.match(line)]
        parsed = [parse_json(line) for line in lines]
        others = [line for line, record in zip(lines, parsed) if record is None]
        compose_stack.figures.setdefault("log_lines", {})[service] = {
            "json": len(lines) - len(others),
            "other": len(others),
        }
        assert len(lines) - len(others) >= 3 and not others, f"{service}: not JSON: {others[:5]}"
    worker_lines = [
        parse_json(re.split(r"\s\|\s", line, maxsplit=1)[-1]) for line in compose_stack.logs("worker").splitlines()
    ]
    assert any(r and r.get("job_id") == trained["id"] for r in worker_lines), "the job's lines carry its job_id"


def test_a_worker_container_killed_mid_job_is_resumed_in_the_same_run(compose_stack: ComposeStack):
    job = compose_stack.submit(**RESUMABLE)
    compose_stack.wait_job(job["id"], {"running"}, timeout=120)
    deadline = time.monotonic() + 180
    while True:
        current = compose_stack.job(job["id"])
        if current["progress"]["fraction"] >= 0.4 or current["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert current["status"] == "running" and current["progress"]["fraction"] < 0.9, current
    worker = compose_stack.container("worker")
    subprocess.run(["docker", "kill", worker], check=True, capture_output=True)
    died = time.time()
    time.sleep(2)
    subprocess.run(["docker", "start", worker], check=True, capture_output=True)
    done = compose_stack.wait_job(job["id"], FINISHED, timeout=360)
    compose_stack.figures["kill"] = {
        "fraction_at_kill": round(current["progress"]["fraction"], 3),
        "resumed_from_step": done["resumed"][0]["step"] if done["resumed"] else None,
        "steps": done["progress"]["steps"],
        "taken_over_after_kill_s": round(iso_seconds(done["resumed"][0]["at"]) - died, 1) if done["resumed"] else None,
        "finished_after_kill_s": round(time.time() - died, 1),
    }
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and len(done["resumed"]) == 1, done
    assert 0 < done["resumed"][0]["step"] <= current["progress"]["step"], "resumed from a checkpoint"
    assert done["mlflow"]["run_id"] == current["mlflow"]["run_id"], "the same MLflow run"
    history = compose_stack.loss_history(done["mlflow"]["run_id"])
    steps = RESUMABLE["num_epochs"] * (RESUMABLE["total_series_length"] // 5 // 64)
    assert_each_bucket_once(history, steps)
    runs = compose_stack.mlflow_get_post(
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [done["mlflow"]["experiment_id"]], "filter": f"tags.job_id = '{done['id']}'"},
    )
    assert len(runs.get("runs", [])) == 1
    compose_stack.wait_healthy(("worker",), timeout=120)


def test_a_job_queued_across_a_redis_restart_still_runs(compose_stack: ComposeStack):
    started = time.monotonic()
    compose_stack.compose("stop", "worker", timeout=120)
    compose_stack.figures["idle_worker_stop_s"] = round(time.monotonic() - started, 1)
    job = compose_stack.submit(**QUICK)
    assert compose_stack.job(job["id"])["status"] == "queued"
    started = time.monotonic()
    compose_stack.compose("restart", "redis", timeout=120)
    compose_stack.wait_healthy(("redis",), timeout=120)
    compose_stack.figures["redis_restart_to_healthy_s"] = round(time.monotonic() - started, 1)
    assert wait_answer(lambda: compose_stack.job(job["id"])["status"]) == "queued", "the record survived the restart"
    compose_stack.compose("start", "worker", timeout=120)
    done = compose_stack.wait_job(job["id"], FINISHED, timeout=300)
    assert done["status"] == "succeeded", done
    compose_stack.wait_healthy(timeout=180)


def test_a_worker_cut_off_from_the_network_mid_job_is_taken_over_and_writes_nothing_more(compose_stack: ComposeStack):
    """Three worker containers share a sweep of three groups; one is disconnected from the compose network in the
    middle of its group for longer than its lease, then reconnected: another container takes its trials over, the
    reconnected one writes nothing more, every trial succeeds once with each step once, one version registered."""
    compose_stack.compose("up", "-d", "--no-build", "--no-recreate", "--scale", "worker=3", "worker", timeout=300)
    compose_stack.wait_healthy(("worker",), timeout=300)
    workers = compose_stack.containers()["worker"]
    assert len(workers) == 3, workers
    # Three shapes: three groups, one per worker container.
    body = {"params": {k: v for k, v in PARTITIONED.items() if k != "seed"}, "grid": {"state_size": [4, 5, 6]}}
    resp = requests.post(f"{compose_stack.api}/sweeps", json=body, headers=compose_stack.bearer(), timeout=60)
    assert resp.status_code == 202, resp.text
    sweep = resp.json()
    victim_id = sweep["trials"][0]["job_id"]
    deadline = time.monotonic() + 300
    while True:
        victim = compose_stack.job(victim_id)
        if (victim["status"] != "running" and victim["status"] != "queued") or time.monotonic() > deadline:
            break
        if victim["status"] == "running" and victim["progress"]["fraction"] >= 0.3:
            break
        time.sleep(0.1)
    assert victim["status"] == "running" and victim["progress"]["fraction"] < 0.8, victim
    hosts = {container_hostname(c): c for c in workers}
    cut = hosts[victim["worker"]["host"]]
    network = f"{compose_stack.project}_default"
    subprocess.run(["docker", "network", "disconnect", network, cut], check=True, capture_output=True)
    cut_at = time.time()
    try:
        taken = wait_until(
            lambda: (j := compose_stack.job(victim_id))["resumed"] and j, 180, "another container taking the trial over"
        )
    finally:
        subprocess.run(["docker", "network", "connect", network, cut], check=True, capture_output=True)
    reconnected_at = time.time()
    done = wait_until(
        lambda: (s := compose_stack.sweep(sweep["id"]))["status"] in FINISHED and s, 300, "the sweep ending"
    )
    stopped = [
        line for line in container_logs(cut).splitlines() if "writes nothing more" in line and sweep["id"] in line
    ]
    compose_stack.figures["partition"] = {
        "fraction_at_cut": round(victim["progress"]["fraction"], 3),
        "taken_over_after_cut_s": round(iso_seconds(taken["resumed"][0]["at"]) - cut_at, 1),
        "cut_s": round(reconnected_at - cut_at, 1),
        "cut_worker_stopped_after_cut_s": round(iso_seconds(json.loads(stopped[0])["time"]) - cut_at, 1)
        if stopped
        else None,
    }
    assert done["status"] == "succeeded", done
    assert stopped, f"the cut-off worker never said it writes nothing more:\n{container_logs(cut)[-3000:]}"
    record = compose_stack.job(victim_id)
    assert record["status"] == "succeeded" and record["attempts"] == 2 and len(record["resumed"]) == 1, record
    assert record["worker"]["host"] != victim["worker"]["host"], "finished by another container"
    assert record["mlflow"]["run_id"] == victim["mlflow"]["run_id"], "in the same MLflow run"
    steps = record["progress"]["steps"]
    history = compose_stack.loss_history(record["mlflow"]["run_id"])
    assert_each_bucket_once(history, steps)
    versions = compose_stack.mlflow_get(
        "/api/2.0/mlflow/model-versions/search", filter=f"name = '{done['best']['model']['name']}'"
    ).get("model_versions", [])
    trial_runs = {compose_stack.job(t["job_id"])["mlflow"]["run_id"] for t in done["trials"]}
    assert [v["version"] for v in versions if v["run_id"] in trial_runs] == [done["best"]["model"]["version"]]


# --- helpers -----------------------------------------------------------------------------------------


def assert_each_bucket_once(history: list[tuple[int, float]], steps: int) -> None:
    """A run's loss: one point per bucket of consecutive steps (every step for a short job; the
    worker caps the points, so a long job's buckets hold several steps), stamped with the bucket's
    last step, each bucket once and none missing."""
    assert history, "no loss logged"
    size = history[0][0] + 1
    expected = [min((i + 1) * size, steps) - 1 for i in range(-(-steps // size))]
    assert [s for s, _ in history] == expected, (
        f"buckets of {size} steps: {len(history)} points, {len(expected)} expected"
    )


def parse_duration(value) -> float:
    """A compose duration as docker-compose config prints it (e.g. 1m30s, 60s, 90.0s)."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|us|ns|h|m|s)", value):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]
    return total


def parse_json(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def iso_seconds(stamp: str) -> float:
    from contract import clock

    return clock.parse(stamp)


def wait_answer(call, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except (requests.ConnectionError, requests.Timeout, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def container_hostname(container: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.Config.Hostname}}", container], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def container_logs(container: str) -> str:
    out = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=True)
    return out.stdout + out.stderr


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (requests.ConnectionError, requests.Timeout):
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not happen within {timeout} s")
