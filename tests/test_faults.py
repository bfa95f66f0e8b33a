"""Nothing lost: MLflow and Redis stopped under a running service, and started again.

The module starts its own Redis (with its append-only file), MLflow server, Celery worker and API,
each on ports of its own and each in a process group of its own, so one of them can be stopped
(SIGTERM, or SIGKILL as a crash) and started again on the same port with the same data while the
others run on. The machine's own Redis and PostgreSQL are never touched.
"""

import itertools
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from redis.exceptions import ConnectionError as RedisConnectionError

from contract import provenance
from tests.faults_support import Api, MlflowServer, Worker
from tests.support import ROOT, RedisServer, loss_history_artifact, loss_steps, submit, wait_for, wait_status
from worker.retry import BestEffort, Outage, redis_transient
from worker.tracking.metric_sender import MetricSender
from worker.tracking.mlflow_retry import MlflowUnavailable, mlflow_outage, transient

ARTIFACTS = ROOT / "test-artifacts" / "faults"
FINISHED = {"succeeded", "failed", "cancelled"}
# Long enough to stop a server under it (~25 s of training on two cores), in few loss points
# (13 steps per epoch: 26,000), which MLflow on SQLite takes at a few thousand a second.
LONG_JOB = dict(num_epochs=2000, total_series_length=1000, seed=7)
TINY_JOB = dict(num_epochs=2, total_series_length=1000, seed=1)
RETRY_S = "90"  # the module's worker waits this long for MLflow: longer than a restart


@dataclass
class Service:
    directory: Path
    redis: RedisServer
    mlflow: MlflowServer
    worker: Worker
    api: Api

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.mlflow.url)

    def logs(self) -> str:
        """The tail of every process's log, for assertion messages."""
        return "\n".join(f"--- {p.role}\n{p.logs()[-3000:]}" for p in (self.mlflow, self.worker, self.api))


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Service]:
    directory = tmp_path_factory.mktemp("faults")
    redis = RedisServer(directory / "redis", appendonly=True)
    mlflow = MlflowServer(directory / "mlflow")
    worker = Worker(directory, redis.url, mlflow.url, "faults", MLFLOW_RETRY_S=RETRY_S)
    api = Api(directory, redis.url, mlflow.url)
    try:
        for part in (redis, mlflow, worker, api):
            part.start()
        yield Service(directory, redis, mlflow, worker, api)
    finally:
        for process in (api, worker, mlflow):
            process.kill()  # a worker's warm shutdown would wait for its job
        redis.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for log in directory.glob("*.log"):
            shutil.copy(log, ARTIFACTS / log.name)
        shutil.copy(mlflow.log_path, ARTIFACTS / "mlflow.log")


@pytest.fixture
def up(service) -> Service:
    """The service with every part running (a test before may have left one stopped)."""
    if not service.mlflow.running:
        service.mlflow.start()
    if not service.worker.running:
        service.worker.start()
    return service


def job(api: str, job_id: str) -> dict:
    return requests.get(f"{api}/jobs/{job_id}", timeout=10).json()


def wait_progress(api: str, job_id: str, fraction: float, timeout: float = 180) -> dict:
    """Wait until the job runs and has reported at least this fraction."""

    def check():
        current = job(api, job_id)
        done = current["status"] in FINISHED
        return (
            current
            if done or (current["status"] == "running" and current["progress"]["fraction"] >= fraction)
            else None
        )

    current = wait_for(check, timeout, f"job {job_id} running past {fraction:.0%}", interval=0.2)
    assert current["status"] == "running", current
    return current


def wait_end(service: Service, job_id: str, timeout: float = 300) -> dict:
    """Wait until the job is finished; fail early if its worker ended it and the record never said so."""
    deadline, ended_at = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        current = job(service.api.url, job_id)
        if current["status"] in FINISHED:
            return current
        if ended_at is None and re.search(rf"job {job_id} (succeeded|failed)", service.worker.logs()):
            ended_at = time.monotonic()
        assert ended_at is None or time.monotonic() - ended_at < 30, (
            f"the worker ended job {job_id} but its record still says {current['status']}:\n{service.worker.logs()[-5000:]}"
        )
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not finish within {timeout} s:\n{service.logs()}")


def readyz(api: str) -> requests.Response:
    return requests.get(f"{api}/readyz", timeout=10)


def assert_full_history(client: MlflowClient, done: dict) -> None:
    """Every bucket of steps once in the loss chart, every step once in the full history, every epoch's metrics once."""
    params = done["params"]
    steps_per_epoch = params["total_series_length"] // params["batch_size"] // params["truncated_backprop_length"]
    run_id = done["mlflow"]["run_id"]
    steps = sorted(m.step for m in client.get_metric_history(run_id, "loss"))
    total = params["num_epochs"] * steps_per_epoch
    assert steps == loss_steps(total), (len(steps), steps[:3], steps[-3:])
    full = [s for s, _ in loss_history_artifact(client.tracking_uri, run_id)]
    assert full == list(range(total))
    epochs = sorted(m.step for m in client.get_metric_history(run_id, "epoch_loss"))
    assert epochs == list(range(1, params["num_epochs"] + 1))


# --- the retry machinery, without servers --------------------------------------------------------


def test_an_outage_retries_with_backoff_and_gives_up_past_its_limit_naming_the_server():
    calls = []

    def down():
        calls.append(time.monotonic())
        raise MlflowException("API request to http://mlflow:5000/api/2.0/mlflow/runs/log-batch failed")

    outage = Outage("MLflow at http://mlflow:5000", 1.2, transient, MlflowUnavailable, first_delay_s=0.1)
    started = time.monotonic()
    with pytest.raises(MlflowUnavailable, match=r"MLflow at http://mlflow:5000 unreachable for 1 s .* while sending"):
        outage.call(down, "sending")
    assert 1.2 <= time.monotonic() - started < 2.5 and outage.given_up
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert len(calls) >= 4 and gaps[1] > gaps[0] * 1.5 and gaps[2] > gaps[1] * 1.5, gaps  # exponential backoff
    # The outage is counted across calls: the next call gets one try, not a new limit.
    calls.clear()
    with pytest.raises(MlflowUnavailable):
        outage.call(down, "closing the run")
    assert len(calls) == 1
    assert outage.call(lambda: "back", "closing the run") == "back" and not outage.given_up and outage.down_s == 0


def test_an_outage_raises_errors_that_are_not_the_servers_absence_at_once():
    calls = []

    def refused():
        calls.append(1)
        raise MlflowException.invalid_parameter_value("bad parameter")

    with pytest.raises(MlflowException, match="bad parameter"):
        mlflow_outage("http://mlflow:5000", 60).call(refused, "logging")
    assert calls == [1]
    assert transient(ConnectionRefusedError()) and transient(MlflowException("boom"))  # INTERNAL_ERROR: 500
    assert not transient(ValueError()) and redis_transient(RedisConnectionError()) and not redis_transient(ValueError())


def test_best_effort_calls_are_skipped_for_a_while_after_a_failure():
    calls, effort = [], BestEffort("Redis", redis_transient, pause_s=0.3)

    def down():
        calls.append(1)
        raise RedisConnectionError("refused")

    assert effort.call(down, "recording progress", "default") == "default"
    assert effort.call(down, "recording progress", "default") == "default" and len(calls) == 1  # skipped
    time.sleep(0.35)
    assert effort.call(lambda: "ok", "recording progress") == "ok"


class FlakyClient:
    """An MlflowClient's log_batch that fails while down is set, and records what it received."""

    def __init__(self):
        self.down, self.received, self.attempts = False, [], 0

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.attempts += 1
        if self.down:
            raise MlflowException("API request failed with exception Connection refused")
        self.received.extend(metrics)


def test_the_metric_sender_keeps_points_while_mlflow_is_down_and_sends_each_once_in_order():
    client = FlakyClient()
    sender = MetricSender(
        client, "r" * 32, 0.05, Outage("MLflow", 30, transient, MlflowUnavailable, first_delay_s=0.05)
    )
    try:
        client.down = True
        for first in range(0, 2500, 250):  # training goes on: put() never waits
            sender.put("loss", range(first, first + 250), first, 1000 + first)
        wait_for(lambda: client.attempts >= 3, 10, "retries")
        assert sender.pending > 0 and not client.received
        client.down = False
        sender.drain()
    finally:
        sender.stop()
    assert [m.step for m in client.received] == list(range(2500)) and [m.value for m in client.received] == list(
        range(2500)
    )
    assert {m.timestamp for m in client.received[:250]} == {1000}


def test_the_metric_sender_gives_up_past_the_limit_and_the_job_learns_it():
    client = FlakyClient()
    client.down = True
    sender = MetricSender(client, "r" * 32, 0.05, mlflow_outage("http://mlflow:5000", 0.3))
    try:
        sender.put("loss", [0.5], 0, 1)
        with pytest.raises(MlflowUnavailable, match="MLflow at http://mlflow:5000 unreachable"):
            sender.drain()
        with pytest.raises(MlflowUnavailable):
            sender.put("loss", [0.4], 1, 2)
    finally:
        sender.stop()


# --- MLflow --------------------------------------------------------------------------------------


def test_predict_serves_cached_models_while_mlflow_is_down(up):
    api, client = up.api.url, up.client
    trained = wait_status(api, submit(api, **TINY_JOB)["id"], FINISHED, timeout=240)
    assert trained["status"] == "succeeded", (trained, up.logs())
    model = trained["model"]
    # Another version, never loaded by the API: it needs MLflow to be served.
    source = client.get_model_version(model["name"], model["version"])
    other = client.create_model_version(
        model["name"], source.source, run_id=source.run_id, model_id=source.source.rsplit("/", 1)[-1]
    )
    store = redis.Redis.from_url(up.redis.url)  # the same files as the job's version: the API may serve it
    provenance.copy(
        store, "echo-rnn", provenance.lookup(store, "echo-rnn", model["name"], model["version"]), other.version
    )
    served = {}
    for ref in (trained["id"], model["uri"]):
        resp = requests.get(f"{api}/predict", params={"sequence": "0110100111", "model": ref}, timeout=60)
        assert resp.status_code == 200, resp.text
        served[ref] = resp.json()

    up.mlflow.stop()
    down = readyz(api)
    assert down.status_code == 503 and "mlflow" in down.json()["detail"] and "redis" not in down.json()["detail"]
    for ref in (trained["id"], model["uri"]):  # loaded before: served without MLflow
        resp = requests.get(f"{api}/predict", params={"sequence": "0110100111", "model": ref}, timeout=30)
        assert resp.status_code == 200 and resp.json() == served[ref], resp.text
    resp = requests.post(f"{api}/predict", json={"sequences": ["0101", "111"], "model": trained["id"]}, timeout=30)
    assert resp.status_code == 200, resp.text
    for ref in (f"models:/{model['name']}/{other.version}", "models:/echo-rnn@champion", "0" * 32):
        started = time.monotonic()
        resp = requests.get(f"{api}/predict", params={"sequence": "0110", "model": ref}, timeout=60)
        assert resp.status_code == 503, (ref, resp.status_code, resp.text)
        assert resp.headers["Content-Type"] == "application/problem+json" and "MLflow" in resp.json()["title"]
        assert time.monotonic() - started < 15, "a request must not hang on MLflow's own retries"
    resp = requests.get(f"{api}/models", timeout=60)
    assert resp.status_code == 503 and resp.headers["Content-Type"] == "application/problem+json", resp.text

    up.mlflow.start()
    wait_for(lambda: readyz(api).status_code == 200, 30, "/readyz recovering by itself")
    resp = requests.get(
        f"{api}/predict", params={"sequence": "0110", "model": f"models:/{model['name']}/{other.version}"}, timeout=60
    )
    assert resp.status_code == 200, resp.text


def test_training_goes_on_while_mlflow_restarts_and_loses_no_point(up):
    api = up.api.url
    submitted = submit(api, **LONG_JOB)
    before = wait_progress(api, submitted["id"], 0.05)
    assert before["mlflow"], "the run is open before MLflow goes away"

    up.mlflow.stop()
    stopped_at = before["progress"]["step"]
    time.sleep(3)
    during = job(api, submitted["id"])
    up.mlflow.start()  # the same port and store; starting takes a while, and the job goes on meanwhile
    after = job(api, submitted["id"])
    assert during["status"] in ("running", "succeeded") and after["status"] in ("running", "succeeded"), (during, after)
    assert after["progress"]["step"] > stopped_at, "training went on while MLflow was down"

    done = wait_status(api, submitted["id"], FINISHED, timeout=300)
    assert done["status"] == "succeeded", (done, up.logs())
    assert done["attempts"] == 1 and not done["resumed"], "trained once, never restarted"
    client = up.client
    assert_full_history(client, done)
    run = client.get_run(done["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    version = client.get_model_version(done["model"]["name"], done["model"]["version"])
    assert version.run_id == run.info.run_id and version.tags["job_id"] == done["id"]
    assert len(client.search_runs([run.info.experiment_id], f"tags.job_id = '{done['id']}'")) == 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"echo_figure.png", "loss_history.csv.gz"} <= artifacts
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    snapshots = {int(m[1]) for path in images if (m := re.search(r"[%+]step[%+](\d+)[%+]", path))}
    assert len(snapshots) == 10, f"a figure at every tenth of the run, none lost: {sorted(snapshots)}"


# --- Redis ---------------------------------------------------------------------------------------


def test_a_redis_restart_loses_no_job(up):
    api, client = up.api.url, up.client
    running = submit(api, **LONG_JOB)
    queued = [submit(api, **{**TINY_JOB, "seed": seed}) for seed in (11, 12, 13)]
    wait_progress(api, running["id"], 0.05)
    assert all(job(api, q["id"])["status"] == "queued" for q in queued)
    time.sleep(2)  # the append-only file is written every second

    up.redis.process.kill()  # a crash: no shutdown save beyond the append-only file
    up.redis.process.wait()
    down = wait_for(lambda: (r := readyz(api)).status_code == 503 and r.json(), 15, "/readyz answering 503")
    assert "redis" in down["detail"], down
    time.sleep(5)
    up.redis.start()  # the same port and directory: it loads its append-only file
    wait_for(lambda: readyz(api).status_code == 200, 30, "/readyz recovering by itself")

    jobs = [running, *queued]
    ends = {j["id"]: wait_end(up, j["id"]) for j in jobs}
    assert all(e["status"] == "succeeded" for e in ends.values()), (
        {k: (e["status"], e["error"]) for k, e in ends.items()},
        up.logs(),
    )
    for done in ends.values():
        assert done["attempts"] == 1 and not done["resumed"], f"job {done['id']} was started {done['attempts']} times"
        runs = client.search_runs([done["mlflow"]["experiment_id"]], f"tags.job_id = '{done['id']}'")
        assert len(runs) == 1, f"job {done['id']} ran {len(runs)} times"
        assert_full_history(client, done)
        assert client.get_model_version(done["model"]["name"], done["model"]["version"]).tags["job_id"] == done["id"]


# --- MLflow gone for good (last: it leaves MLflow stopped) -------------------------------------


def test_a_job_fails_with_a_clear_reason_when_mlflow_stays_down(up):
    api = up.api.url
    # A worker that waits only 5 s for MLflow takes the job (the module's worker waits 90 s).
    up.worker.stop()
    impatient = Worker(up.directory, up.redis.url, up.mlflow.url, "impatient", MLFLOW_RETRY_S="5").start()
    try:
        submitted = submit(api, **LONG_JOB)
        wait_progress(api, submitted["id"], 0.05)
        up.mlflow.stop()
        stopped = time.monotonic()
        done = wait_status(api, submitted["id"], FINISHED, timeout=120)
        took = time.monotonic() - stopped
    finally:
        impatient.kill()
    assert done["status"] == "failed", (done, impatient.logs()[-3000:])
    assert "MLflow" in done["error"] and up.mlflow.url in done["error"] and "unreachable" in done["error"], done[
        "error"
    ]
    assert took < 30, f"the job failed {took:.0f} s after MLflow went away; its limit is 5 s"
