"""A model you can trust: held-out evaluation, a champion that only moves forward, an initialisation that learns.

The module runs a service of its own (Redis, MLflow, API, one worker), so the champion's history is
the one its tests write. Same seed, same curve on the CPU: each job's outcome below is fixed.
"""

import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.faults_support import Api, MlflowServer, Worker
from tests.support import ROOT, RedisServer, submit, wait_status

FINISHED = {"succeeded", "failed", "cancelled"}
LEARNS = dict(num_epochs=2, seed=1)  # held-out echo accuracy 0.9997
COIN_TOSS = dict(num_epochs=5, total_series_length=20_000, seed=11)  # sits at ln 2: 0.50
BETTER = dict(num_epochs=10, seed=1, init="glorot", target_loss=0.001)  # 1.0, stops early


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[tuple[Api, MlflowServer]]:
    directory = tmp_path_factory.mktemp("champion")
    redis = RedisServer(directory / "redis")
    mlflow = MlflowServer(directory / "mlflow")
    api = Api(directory, redis.url, mlflow.url, RATE_LIMIT_JOBS="", RATE_LIMIT_PREDICT="", ALIAS_TTL_S="0")
    worker = Worker(directory, redis.url, mlflow.url, "champion")
    try:
        for part in (redis, mlflow, api, worker):
            part.start()
        yield api, mlflow
    finally:
        for process in (worker, api, mlflow):
            process.kill()
        redis.stop()
        out = ROOT / "test-artifacts" / "champion"
        out.mkdir(parents=True, exist_ok=True)
        for log in Path(directory).glob("*.log"):
            shutil.copy(log, out / log.name)


def train(api: Api, **params) -> dict:
    done = wait_status(api.url, submit(api.url, **params)["id"], FINISHED, timeout=300)
    assert done["status"] == "succeeded", done
    return done


def default_echo_accuracy(api: Api) -> tuple[str, float]:
    """The version GET /predict serves without model=, and its echo accuracy on fresh sequences."""
    rng = random.Random(99)
    right = total = 0
    version = ""
    for _ in range(5):
        bits = "".join(rng.choice("01") for _ in range(300))
        resp = requests.get(f"{api.url}/predict", params={"sequence": bits}, timeout=60)
        assert resp.status_code == 200, resp.text
        version, echo = resp.json()["model"]["version"], resp.json()["echo"]
        right += sum(echo[i] == bits[i - 3] for i in range(3, len(bits)))
        total += len(bits) - 3
    return version, right / total


def test_the_champion_only_moves_forward(service):
    api, mlflow = service
    none_yet = requests.get(f"{api.url}/predict", params={"sequence": "0110"}, timeout=60)
    assert none_yet.status_code == 404 and "champion" in none_yet.json()["detail"], none_yet.text

    first = train(api, **LEARNS)
    assert first["model"]["promoted"] is True and "the first champion" in first["model"]["promotion"]
    assert first["evaluation"]["echo_accuracy"] >= 0.99 and set(first["evaluation"]["by_length"]) == {
        "16",
        "100",
        "1000",
    }

    coin = train(api, **COIN_TOSS)
    assert coin["model"] is not None and coin["model"]["promoted"] is False
    assert coin["evaluation"]["echo_accuracy"] < 0.6
    assert coin["model"]["promotion"] == f"eval_echo_accuracy {coin['evaluation']['echo_accuracy']:.3f} < 0.99"
    version, accuracy = default_echo_accuracy(api)
    assert version == first["model"]["version"] and accuracy >= 0.99, (version, accuracy)

    better = train(api, **BETTER)
    assert better["stopped_early"] is not None and better["stopped_early"] < BETTER["num_epochs"]
    assert (
        better["model"]["promoted"] is True
        and f"over champion v{first['model']['version']}" in better["model"]["promotion"]
    )
    assert default_echo_accuracy(api)[0] == better["model"]["version"]

    again = train(api, **LEARNS)  # as good as the first champion, below the new one
    assert (
        again["model"]["promoted"] is False
        and f"champion v{better['model']['version']} scores higher" in again["model"]["promotion"]
    )

    client = MlflowClient(tracking_uri=mlflow.url)
    tags = client.get_model_version("echo-rnn", coin["model"]["version"]).tags
    assert tags["promoted"] == "false" and tags["promotion_reason"] == coin["model"]["promotion"]
    run = client.get_run(coin["mlflow"]["run_id"]).data.metrics
    assert run["eval_echo_accuracy"] == pytest.approx(coin["evaluation"]["echo_accuracy"]) and "eval_loss" in run
    listed = {m["version"]: m for m in requests.get(f"{api.url}/models", timeout=30).json()["models"]}
    assert [v for v, m in listed.items() if m["champion"]] == [better["model"]["version"]]
    assert listed[coin["model"]["version"]]["promoted"] is False
    assert listed[better["model"]["version"]]["metrics"]["eval_echo_accuracy"] == pytest.approx(1.0)


def test_a_stopped_early_job_trains_only_its_epochs(service):
    api, mlflow = service
    done = train(api, **{**BETTER, "seed": 3, "target_loss": 0.002})
    steps_per_epoch = 50_000 // 5 // 15
    trained, planned = 2 * steps_per_epoch, BETTER["num_epochs"] * steps_per_epoch
    bucket = -(-planned // 2000)  # the loss chart's buckets are sized for the job as planned
    history = MlflowClient(tracking_uri=mlflow.url).get_metric_history(done["mlflow"]["run_id"], "loss")
    expected = [*range(bucket - 1, trained, bucket), *([trained - 1] if trained % bucket else [])]
    assert done["stopped_early"] == 2 and sorted(m.step for m in history) == expected
