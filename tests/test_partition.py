"""Cut off, not dead: a node frozen past its lease, lost messages, a sweep whose finish never ran.

A node that is paused (SIGSTOP to its whole process group: a VM suspended, a network partition, a
stop-the-world pause) loses its lease while another node takes its job over; when it wakes up, its
attempt must notice that it lost the lease and write nothing more: one outcome in Redis, one MLflow
run closed once, each loss point once, no second model version. The module also checks that

- every DELETE answered 202 ends cancelled, and every 409 ends succeeded, near the end of training;
- a job whose broker message was lost is sent again by the watchdog's reconciler;
- a sweep whose trials ended but whose finish never ran (its node killed in between) is finished
  by the reconciler;
- a version planted in a job's MLflow run is never adopted as the job's model, nor served;
- the watchdog's thread survives a broker error while it sends a job again, and sends it later.

The module starts its own Redis (append-only file), MLflow server and API; each test starts the
worker nodes it needs, each in a process group of its own, with short leases and watchdog rounds
(LEASE_TTL_S=6, WATCHDOG_INTERVAL_S=1, RECONCILE_AFTER_S=4 where the reconciler matters) so that
takeovers take seconds. Logs go to test-artifacts/partition/, figures to its figures.txt.
"""

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
import requests
from celery import Celery
from mlflow.exceptions import MlflowException
from redis import Redis

from contract import clock, tasks
from contract.job import STATUSES
from contract.job_store import JobStore
from contract.params import TrainingParams
from tests.faults_support import Service, Worker, running_service
from tests.support import (
    ROOT,
    RedisServer,
    loss_history_artifact,
    loss_steps,
    submit,
    submit_sweep,
    wait_for,
    wait_status,
    wait_sweep,
)
from worker.attempt.watchdog import Watchdog

ARTIFACTS = ROOT / "test-artifacts" / "partition"
FINISHED = {"succeeded", "failed", "cancelled"}
PREFIX = "echo-rnn"  # the service's Redis key prefix (JOB_KEY_PREFIX's default)
MODEL = "echo-rnn"  # the registered model (REGISTERED_MODEL's default)
STOPPED = "writes nothing more"  # what an attempt that lost its lease logs when it finds out
# Every node of this module: a lease lapses 6 s after its holder stops renewing it; watchdogs look every second.
TAKEOVER = {"LEASE_TTL_S": "6", "WATCHDOG_INTERVAL_S": "1"}
RECONCILING = {**TAKEOVER, "RECONCILE_AFTER_S": "4"}
# ~8 s of training on two fast cores, ~20 s on CI's: long enough to start the taker node while it
# runs, then pause it at 40 % with a checkpoint written (every 2 s) and 60 % still to go.
LONG = dict(num_epochs=200, total_series_length=200_000, truncated_backprop_length=64, seed=41)
# ~4-10 s of training: a pool child killed at 30 % leaves the job well short of its end.
MEDIUM = dict(num_epochs=100, total_series_length=200_000, truncated_backprop_length=64, seed=61)
QUICK = dict(num_epochs=3, total_series_length=20_000, seed=2)
# Early-stopping jobs: glorot reaches the target within an epoch or two, so the end of training is
# a few tens of milliseconds after it starts, and a DELETE lands near it.
EARLY = dict(num_epochs=40, total_series_length=20_000, init="glorot", target_loss=0.3)
SWEEP_BASE = {"num_epochs": 3, "total_series_length": 6000, "init": "glorot"}  # 80 steps an epoch


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("partition"), ARTIFACTS) as running:
        yield running


@pytest.fixture
def up(service) -> Iterator[Service]:
    """The service with no worker node yet; the test starts the ones it needs."""
    if not service.redis.process or service.redis.process.poll() is not None:
        service.redis.start()
    yield service
    service.stop_workers()


# --- small helpers --------------------------------------------------------------------------------


def job(service: Service, job_id: str) -> dict:
    return requests.get(f"{service.api.url}/jobs/{job_id}", timeout=10).json()


def sweep_now(service: Service, sweep_id: str) -> dict:
    return requests.get(f"{service.api.url}/sweeps/{sweep_id}", timeout=10).json()


def redis_of(service: Service) -> Redis:
    return Redis.from_url(service.redis.url)


def total_steps(params: dict) -> int:
    return TrainingParams(**params).total_steps


def loss_history(service: Service, run_id: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in service.client.get_metric_history(run_id, "loss"))


def versions_of(service: Service, job_id: str) -> list:
    return [
        v for v in service.client.search_model_versions(f"name = '{MODEL}'") if (v.tags or {}).get("job_id") == job_id
    ]


def versions_of_run(service: Service, run_id: str) -> list:
    return [v for v in service.client.search_model_versions(f"run_id = '{run_id}'") if v.name == MODEL]


def runs_tagged(service: Service, job_id: str) -> list:
    """Every MLflow run of the service's experiment tagged with this job's id."""
    experiment = service.client.get_experiment_by_name("echo-rnn")
    return service.client.search_runs([experiment.experiment_id], f"tags.job_id = '{job_id}'") if experiment else []


def predict(service: Service, model_ref: str) -> requests.Response:
    return requests.get(f"{service.api.url}/predict", params={"sequence": "0110100111", "model": model_ref}, timeout=60)


def reconciler_count(redis: Redis, name: str, prefix: str = PREFIX) -> int:
    """A counter of the watchdog's reconciler (errors, resent, taken_over, sweeps_finished)."""
    return int(redis.hget(f"{prefix}:reconciler", name) or 0)


def has_checkpoint(redis: Redis, job_id: str) -> bool:
    """Whether any checkpoint key names this job (echo-rnn:checkpoint:<job id> today)."""
    return any(True for _ in redis.scan_iter(match=f"{PREFIX}:checkpoint:*{job_id}*", count=1000))


def record_fields(redis: Redis, job_id: str, *names: str) -> dict:
    """Some fields of a job's record straight from Redis (each a JSON value), None where absent."""
    raw = redis.hmget(f"{PREFIX}:job:{job_id}", list(names))
    return {n: (json.loads(v) if v is not None else None) for n, v in zip(names, raw)}


def log_time(line: dict) -> float:
    """A JSON log line's time (contract.logs: asctime renamed time, local time) as seconds since the epoch."""
    return datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


def log_lines(node: Worker) -> list[dict]:
    """The JSON lines of a node's log (the test's own banner lines and any other text skipped)."""
    lines = []
    for text in node.logs().splitlines():
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(text))
    return lines


def stop_line(node: Worker, job_id: str, timeout: float) -> dict | None:
    """The node's first log line saying an attempt of this job writes nothing more (waiting up to timeout), or None."""

    def found() -> dict | None:
        return next(
            (
                line
                for line in log_lines(node)
                if STOPPED in str(line.get("message", "")) and job_id in json.dumps(line)
            ),
            None,
        )

    try:
        return wait_for(found, timeout, f"{node.name} logging that job {job_id} {STOPPED}", 0.1)
    except TimeoutError:
        return None


def figure(line: str) -> None:
    """Append one line of figures to test-artifacts/partition/figures.txt."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(ARTIFACTS / "figures.txt", "a") as out:
        out.write(line + "\n")
    print(line)


def cancel_leftovers(service: Service) -> None:
    """Cancel what earlier tests may have left queued or running: a fresh node then runs only this test's work."""
    for status in ("queued", "running"):
        listed = requests.get(f"{service.api.url}/jobs", params={"status": status, "limit": 100}, timeout=10).json()
        for left in listed["jobs"]:
            requests.delete(f"{service.api.url}/jobs/{left['id']}", timeout=10)


def twin(service: Service, params: dict) -> dict:
    """The loss histories of an uninterrupted job with these parameters, run once per module on a live node."""
    key = json.dumps(params, sort_keys=True)
    if key not in service.twins:
        done = wait_status(service.api.url, submit(service.api.url, **params)["id"], FINISHED, timeout=300)
        assert done["status"] == "succeeded", (done["error"], service.logs())
        run_id = done["mlflow"]["run_id"]
        service.twins[key] = {
            "metric": loss_history(service, run_id),
            "every_step": loss_history_artifact(service.mlflow.url, run_id),
        }
    return service.twins[key]


# --- a node paused past its lease -----------------------------------------------------------------


@dataclass
class Paused:
    """What happened to a job whose node was paused, taken over, then woken up."""

    job_id: str
    node: Worker
    at_pause: dict  # the job's record just after the pause
    paused_at: float
    woke_at: float
    takeover_s: float
    stop: dict | None  # the paused node's log line saying the attempt writes nothing more
    wake_to_stop_s: float | None


def pause_until_taken_over(up: Service, label: str, ready: Callable[[dict], bool], interval: float) -> Paused:
    """Run LONG on a node, SIGSTOP the node's whole process group once ready(record) holds, wait until another node
    has taken the job over and made progress, then SIGCONT it; figures go to figures.txt under label."""
    paused = up.worker(f"paused-{label}", **TAKEOVER)
    submitted = submit(up.api.url, **LONG)
    wait_for(lambda: job(up, submitted["id"])["status"] == "running", 120, f"node paused-{label} starting the job")
    up.worker(f"taker-{label}", **TAKEOVER)  # idle until the job's lease lapses: its watchdog sends the job again

    def when_ready() -> dict | None:
        current = job(up, submitted["id"])
        return current if current["status"] != "running" or ready(current) else None

    before = wait_for(when_ready, 240, f"the job reaching the moment to pause it ({label})", interval)
    assert before["status"] == "running", f"the job {before['status']} before it could be paused: make LONG longer"
    os.killpg(paused.process.pid, signal.SIGSTOP)  # the Celery main process and its pool child together
    paused_at = time.time()
    continued = False
    try:
        at_pause = job(up, submitted["id"])
        assert at_pause["status"] == "running" and at_pause["worker"], at_pause

        def taken_over() -> dict | None:
            current = job(up, submitted["id"])
            moved_on = current["status"] in FINISHED or current["progress"]["step"] > at_pause["progress"]["step"]
            return current if current["resumed"] and moved_on else None

        taken = wait_for(taken_over, 120, "another node taking the paused job over and training it on")
        takeover_s = clock.parse(taken["resumed"][0]["at"]) - paused_at
        os.killpg(paused.process.pid, signal.SIGCONT)
        woke_at, continued = time.time(), True
    finally:
        if not continued:
            os.killpg(paused.process.pid, signal.SIGCONT)
    stop = stop_line(paused, submitted["id"], 30)
    wake_to_stop_s = log_time(stop) - woke_at if stop else None
    figure(
        f"{label} takeover_s={takeover_s:.1f} wake_to_stop_s="
        f"{'none' if wake_to_stop_s is None else f'{wake_to_stop_s:.1f}'} paused_in={at_pause['phase']}"
    )
    return Paused(submitted["id"], paused, at_pause, paused_at, woke_at, takeover_s, stop, wake_to_stop_s)


def assert_paused_attempt_wrote_nothing_more(up: Service, paused: Paused) -> dict:
    """The checks both pause tests share; returns the job's final record."""
    assert paused.takeover_s < 60, f"taken over {paused.takeover_s:.0f} s after its node was paused"
    assert paused.stop is not None, (
        f"the paused node never logged that the job's attempt {STOPPED} "
        f"within 30 s of waking:\n{paused.node.logs()[-4000:]}"
    )
    assert paused.wake_to_stop_s is not None and paused.wake_to_stop_s < 30, paused.wake_to_stop_s
    assert paused.stop.get("pid") == paused.at_pause["worker"]["pid"], (
        "the job's pool child (the pid its record names) logs it",
        paused.stop,
        paused.at_pause["worker"],
    )

    done = wait_status(up.api.url, paused.job_id, FINISHED, timeout=300)
    assert done["status"] == "succeeded", (done["error"], up.logs())
    assert done["attempts"] == 2 and len(done["resumed"]) == 1, (done["attempts"], done["resumed"])
    assert done["mlflow"]["run_id"] == paused.at_pause["mlflow"]["run_id"], "resumed in the same run"
    assert_one_outcome(up, done)

    run_id = done["mlflow"]["run_id"]
    assert up.client.get_run(run_id).info.status == "FINISHED"
    assert len(runs_tagged(up, done["id"])) == 1, "one MLflow run for the job"
    steps = total_steps(LONG)
    history = loss_history(up, run_id)
    assert [s for s, _ in history] == loss_steps(steps), "each bucket of steps exactly once: no point twice"
    every_step = loss_history_artifact(up.mlflow.url, run_id)
    assert [s for s, _ in every_step] == list(range(steps)), "each step exactly once in the full history"
    paused.node.kill()  # the twin runs on the taker
    uninterrupted = twin(up, LONG)
    assert history == uninterrupted["metric"], "the same curve as the job never interrupted"
    assert every_step == uninterrupted["every_step"], "every step's loss as the job never interrupted"
    return done


def assert_one_outcome(up: Service, done: dict) -> None:
    """The job's end is written once: it stays as it is, and the job is in one status index only."""
    time.sleep(2)  # anything the woken node still meant to write has had time to land
    again = job(up, done["id"])
    kept = ("status", "finished_at", "model", "attempts", "resumed", "mlflow")
    assert {k: again[k] for k in kept} == {k: done[k] for k in kept}, "the job's end was written again"
    redis = redis_of(up)
    indexed = [s for s in STATUSES if redis.zscore(f"{PREFIX}:status:{s}", done["id"]) is not None]
    assert indexed == [done["status"]], indexed


def test_a_paused_node_taken_over_writes_nothing_more_when_it_wakes(up):
    redis = redis_of(up)
    first_seen: list[float] = []

    def ready(current: dict) -> bool:
        # At 40 %, with a checkpoint written (one every 2 s): its key, or 2.5 s of training past 40 %.
        if current["progress"]["fraction"] < 0.4:
            return False
        first_seen.append(time.monotonic())
        return has_checkpoint(redis, current["id"]) or time.monotonic() - first_seen[0] >= 2.5

    paused = pause_until_taken_over(up, "pause-40", ready, 0.05)
    done = assert_paused_attempt_wrote_nothing_more(up, paused)
    assert 0 < done["resumed"][0]["step"] < total_steps(LONG), "resumed from a checkpoint written before the pause"
    registered = versions_of(up, done["id"])
    assert [v.version for v in registered] == [done["model"]["version"]], "one version, the job's"


def test_a_node_paused_at_the_end_of_training_writes_nothing_more(up):
    def ready(current: dict) -> bool:
        return current["progress"]["fraction"] >= 0.97 or current["phase"] == "saving"

    paused = pause_until_taken_over(up, "pause-97", ready, 0.01)
    done = assert_paused_attempt_wrote_nothing_more(up, paused)
    own = done["model"]
    resp = predict(up, own["uri"])
    assert resp.status_code == 200, resp.text
    # A pause between registering a version and recording it leaves an orphan version: never served.
    others = {str(v.version) for v in [*versions_of_run(up, done["mlflow"]["run_id"]), *versions_of(up, done["id"])]}
    for version in sorted(others - {str(own["version"])}):
        resp = predict(up, f"models:/{MODEL}/{version}")
        assert resp.status_code == 403, (version, resp.status_code, resp.text)


# --- cancels near the end of training ------------------------------------------------------------

# (when to start counting, seconds after it): spread around the end of training, so that some
# DELETEs land before saving, some as it begins and some during it.
CANCEL_SCHEDULE: list[tuple[str, float]] = [
    ("running", 0.0),
    ("training", 0.0),
    ("saving", 0.0),
    ("training", 0.005),
    ("training", 0.01),
    ("saving", 0.002),
    ("training", 0.02),
    ("training", 0.04),
    ("saving", 0.01),
    ("training", 0.08),
    ("training", 0.15),
    ("saving", 0.05),
]


def reached(moment: str, fields: dict) -> bool:
    """Whether a job's record (status, phase, progress, stopped_early) shows it reached moment, or went past it."""
    status, phase, progress = fields["status"], fields["phase"], fields["progress"] or {}
    past_saving = status in FINISHED or phase == "saving" or fields["stopped_early"] is not None
    if moment == "running":
        return status != "queued"
    if moment == "training":
        return past_saving or phase == "training" or progress.get("fraction", 0) > 0
    return past_saving


def test_every_cancel_answered_202_ends_cancelled(up):
    up.worker("canceller", **TAKEOVER)
    redis = redis_of(up)
    answers: list[tuple[int, str, dict]] = []
    for seed, (moment, delay) in enumerate(CANCEL_SCHEDULE):
        submitted = submit(up.api.url, **EARLY, seed=seed)

        def at_moment(submitted: dict = submitted, moment: str = moment) -> bool:
            fields = record_fields(redis, submitted["id"], "status", "phase", "progress", "stopped_early")
            return reached(moment, fields)

        wait_for(at_moment, 120, f"job {seed} reaching its {moment} moment", 0.001)
        time.sleep(delay)
        resp = requests.delete(f"{up.api.url}/jobs/{submitted['id']}", timeout=10)
        done = wait_status(up.api.url, submitted["id"], FINISHED, timeout=120)
        answers.append(
            (resp.status_code, submitted["id"], {"moment": moment, "delay": delay, "status": done["status"]})
        )
        assert resp.status_code in (202, 409), (seed, resp.status_code, resp.text)
        expected = "cancelled" if resp.status_code == 202 else "succeeded"
        assert done["status"] == expected, (
            f"DELETE answered {resp.status_code} ({moment} + {delay} s), job {done['status']}",
            resp.text,
            done["error"],
        )
    for code, job_id, _ in answers:
        expected = "KILLED" if code == 202 else "FINISHED"

        def runs_closed(job_id: str = job_id, expected: str = expected, code: int = code) -> bool:
            runs = runs_tagged(up, job_id)
            return all(r.info.status == expected for r in runs) and (code == 202 or len(runs) == 1)

        wait_for(runs_closed, 30, f"job {job_id}'s MLflow run ending {expected}")
    codes = [code for code, _, _ in answers]
    figure(f"cancels answered_202={codes.count(202)} answered_409={codes.count(409)}")
    assert len(answers) == len(CANCEL_SCHEDULE)
    assert 202 in codes and 409 in codes, f"both answers should have come up: {answers}"


# --- the reconciler -------------------------------------------------------------------------------


def test_a_job_whose_message_was_lost_still_runs(up):
    cancel_leftovers(up)
    redis = redis_of(up)
    submitted = submit(up.api.url, **QUICK)
    wait_for(lambda: redis.llen("celery") >= 1, 10, "the job's message in the broker's queue")
    redis.delete("celery")  # the message is lost: only the job's record says it is to run
    assert job(up, submitted["id"])["status"] == "queued"
    resent_before = reconciler_count(redis, "resent")
    up.worker("reconciling", **RECONCILING)
    node_ready = time.time()
    # RECONCILE_AFTER_S (4) + 2 × WATCHDOG_INTERVAL_S (1) + the job's own time (a few seconds): well inside 120 s.
    done = wait_status(up.api.url, submitted["id"], FINISHED, timeout=120)
    figure(
        f"lost-message started_after_s={clock.parse(done['started_at']) - node_ready:.1f} "
        f"succeeded_after_s={clock.parse(done['finished_at']) - node_ready:.1f}"
    )
    assert done["status"] == "succeeded", (done["error"], up.logs())
    assert reconciler_count(redis, "resent") >= resent_before + 1, "the reconciler counted the job it sent again"


def test_a_sweep_whose_finish_never_ran_is_finished_by_the_reconciler(up):
    cancel_leftovers(up)
    redis = redis_of(up)
    tries = 3
    for attempt in range(1, tries + 1):
        finisher = up.worker(f"finisher-{attempt}", **TAKEOVER)
        sweep = submit_sweep(up.api.url, {"params": SWEEP_BASE, "grid": {"seed": [7, 8]}})
        keys = [f"{PREFIX}:job:{t['job_id']}" for t in sweep["trials"]]
        assert len(keys) == 2, sweep
        deadline = time.monotonic() + 180
        while True:  # Redis itself, every ~2 ms: kill the node between its trials' ends and the sweep's
            pipe = redis.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "status")
            if all(raw is not None and json.loads(raw) in FINISHED for raw in pipe.execute()):
                break
            assert time.monotonic() < deadline, f"the sweep's trials did not end within 180 s:\n{up.logs()}"
            time.sleep(0.002)
        finisher.kill()
        if sweep_now(up, sweep["id"])["status"] not in FINISHED:
            break
        print(f"try {attempt}: the sweep had ended before its node was killed; again")
    else:
        pytest.fail(
            f"in {tries} tries the finisher node always ended the sweep before it could be killed between "
            "its trials' ends and the sweep's: the scenario could not be set up"
        )

    finished_before = reconciler_count(redis, "sweeps_finished")
    up.worker("sweep-reconciler", **RECONCILING)
    started = time.time()
    done = wait_sweep(up.api.url, sweep["id"], FINISHED, timeout=60)
    figure(f"sweep-finish finished_after_s={time.time() - started:.1f} tries={attempt}")
    assert done["status"] == "succeeded", (done, up.logs())
    best = done["best"]
    assert best and best["model"] and best["model"]["version"], done
    version = up.client.get_model_version(MODEL, best["model"]["version"])
    assert (version.tags or {}).get("job_id") == best["job_id"], version
    resp = predict(up, best["model"]["uri"])
    assert resp.status_code == 200, resp.text
    assert up.client.get_run(done["mlflow"]["run_id"]).info.status == "FINISHED", "the sweep's parent run closed"
    # A finisher killed between registering and recording leaves an orphan version: never served.
    trial_runs = [job(up, t["job_id"])["mlflow"]["run_id"] for t in done["trials"]]
    others = {str(v.version) for r in trial_runs for v in versions_of_run(up, r)} - {str(best["model"]["version"])}
    for other in sorted(others):
        assert predict(up, f"models:/{MODEL}/{other}").status_code == 403, other
    assert reconciler_count(redis, "sweeps_finished") >= finished_before + 1, "the reconciler counted the sweep"


# --- a planted version ----------------------------------------------------------------------------


def test_a_planted_version_is_never_adopted_or_served(up):
    node = up.worker("planted", **TAKEOVER)
    submitted = submit(up.api.url, **MEDIUM)
    running = wait_for(
        lambda: (j := job(up, submitted["id"]))["progress"]["fraction"] >= 0.3 and j["mlflow"] and j,
        180,
        "the job reaching 30 %",
        0.05,
    )
    run_id = running["mlflow"]["run_id"]
    client = up.client
    try:
        client.create_registered_model(MODEL)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    planted = client.create_model_version(
        MODEL, source=f"runs:/{run_id}/planted", run_id=run_id, tags={"job_id": submitted["id"]}
    )
    pid = running["worker"]["pid"]
    assert os.getpgid(pid) == node.process.pid, "the job's pool child is a process of the node"
    assert job(up, submitted["id"])["status"] == "running", (
        "the job ended before its child could be killed: make MEDIUM longer"
    )
    os.kill(pid, signal.SIGKILL)  # Celery's main process sees its child lost and requeues the task

    done = wait_status(up.api.url, submitted["id"], FINISHED, timeout=240)
    assert done["status"] == "succeeded", (done["error"], up.logs())
    assert done["attempts"] >= 2, "the job was started again after its child died"
    assert done["model"]["version"] != str(planted.version), "the planted version was adopted as the job's model"
    resp = predict(up, f"models:/{MODEL}/{planted.version}")
    assert resp.status_code == 403, (resp.status_code, resp.text)
    resp = predict(up, f"models:/{MODEL}/{done['model']['version']}")
    assert resp.status_code == 200, resp.text


# --- the watchdog, in process ---------------------------------------------------------------------


def test_the_watchdog_survives_a_broker_error_during_a_takeover(up, tmp_path):
    # Database 1 of the module's Redis is this test's alone: the service's records and counters are in 0.
    store_redis = Redis(host="127.0.0.1", port=up.redis.port, db=1)
    store_redis.flushdb()
    store = JobStore(store_redis, PREFIX)
    broker = RedisServer(tmp_path / "broker").start()
    app = Celery("t", broker=broker.url, set_as_current=False)
    # A stopped broker fails a send at once (kombu's OperationalError, not a RedisError), never retried here.
    app.conf.update(
        broker_connection_retry=False,
        broker_connection_max_retries=0,
        broker_connection_timeout=1,
        task_publish_retry=False,
    )

    def send(message: tasks.Message) -> None:
        """What the worker's main process hands the watchdog: send_task through a Celery app."""
        tasks.send(app, message)

    created = store.create(TrainingParams(**QUICK).model_dump(), total_steps(QUICK))
    assert store.move(created.id, "running", started_at=clock.now(), phase="training") == "queued"  # no lease: lost
    broker.stop()
    watchdog = Watchdog(store, send, interval_s=0.3).start()
    try:
        wait_for(lambda: reconciler_count(store_redis, "errors") >= 1, 15, "the watchdog counting the broker's error")
        time.sleep(1.0)  # more than two rounds
        assert watchdog.alive, "the watchdog's thread died of the broker's error"
        broker.start()  # the same port, empty
        queue = Redis.from_url(broker.url)
        wait_for(lambda: queue.llen("celery") >= 1, 10, "the job's message reaching the broker once it is back")
        message = json.loads(queue.lindex("celery", 0))
        assert message["headers"]["id"] == created.id and message["headers"]["task"] == tasks.TRAIN, message["headers"]
        assert watchdog.alive
    finally:
        watchdog.stop()
        broker.stop()
        store_redis.flushdb()
