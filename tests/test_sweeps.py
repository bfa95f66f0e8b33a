"""Sweeps through the whole service: trials trained in groups, nested MLflow runs, only the best model registered."""

import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.support import loss_history_artifact, submit, submit_sweep, wait_for, wait_status, wait_sweep

FINISHED = {"succeeded", "failed", "cancelled"}
BASE = {"num_epochs": 3, "total_series_length": 6000, "init": "glorot"}  # 80 steps an epoch


@pytest.fixture(scope="module")
def grid_sweep(stack) -> dict:
    """Two shapes (state_size 4 and 6) × two seeds: two groups of two trials, on the stack's two workers."""
    sweep = submit_sweep(
        stack.api, {"name": "grid test", "params": BASE, "grid": {"state_size": [4, 6], "seed": [1, 2]}}
    )
    assert sweep["status"] == "queued" and sweep["groups"] == [[0, 1], [2, 3]]
    done = wait_sweep(stack.api, sweep["id"], FINISHED)
    assert done["status"] == "succeeded", (done, stack.logs()[-4000:])
    return done


def test_every_trial_is_a_job_that_succeeded_and_the_leaderboard_ranks_them(stack, grid_sweep):
    assert [t["status"] for t in grid_sweep["trials"]] == ["succeeded"] * 4
    assert grid_sweep["progress"] == {"trials": 4, "planned": 4, "finished": 4, "succeeded": 4, "fraction": 1.0}
    board = grid_sweep["leaderboard"]
    assert [r["rank"] for r in board] == [1, 2, 3, 4]
    keys = [(-r["echo_accuracy"], r["loss"]) for r in board]
    assert keys == sorted(keys)
    for trial in grid_sweep["trials"]:
        job = requests.get(f"{stack.api}/jobs/{trial['job_id']}", timeout=5).json()
        assert job["sweep"] == {"sweep_id": grid_sweep["id"], "trial": trial["trial"], "group": trial["group"]}
        assert job["params"]["state_size"] == trial["values"]["state_size"] and job["evaluation"]


def test_only_the_best_trial_is_registered_and_gated(stack, grid_sweep):
    client = MlflowClient(stack.mlflow)
    best = grid_sweep["best"]
    assert best["trial"] == grid_sweep["leaderboard"][0]["trial"]
    model = best["model"]
    assert model["promoted"] is not None and model["promotion"]
    job = requests.get(f"{stack.api}/jobs/{best['job_id']}", timeout=5).json()
    assert job["model"] == model
    run_ids = {
        requests.get(f"{stack.api}/jobs/{t['job_id']}", timeout=5).json()["mlflow"]["run_id"]
        for t in grid_sweep["trials"]
    }
    versions = [v for v in client.search_model_versions(f"name = '{model['name']}'") if v.run_id in run_ids]
    assert [v.version for v in versions] == [model["version"]]


def test_mlflow_holds_a_parent_run_with_a_child_run_per_trial(stack, grid_sweep):
    client = MlflowClient(stack.mlflow)
    parent = grid_sweep["mlflow"]["run_id"]
    assert client.get_run(parent).info.status == "FINISHED"
    assert client.get_run(parent).info.run_name == "grid test"
    artifacts = {a.path for a in client.list_artifacts(parent)}
    assert {"leaderboard.json", "leaderboard.csv", "loss_curves.png"} <= artifacts
    for trial in grid_sweep["trials"]:
        job = requests.get(f"{stack.api}/jobs/{trial['job_id']}", timeout=5).json()
        run = client.get_run(job["mlflow"]["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == parent and run.info.status == "FINISHED"
        assert run.data.params["state_size"] == str(trial["values"]["state_size"])
        assert (
            len(client.get_metric_history(run.info.run_id, "loss")) == 120
        )  # 240 steps in buckets of 2 (≤ 200 points)


def test_a_trial_trains_exactly_as_the_same_job_would(stack, grid_sweep):
    trial = grid_sweep["trials"][3]
    params = {**BASE, **trial["values"]}
    job = wait_status(stack.api, submit(stack.api, **params)["id"], FINISHED, timeout=240)
    assert job["status"] == "succeeded", job
    trial_job = requests.get(f"{stack.api}/jobs/{trial['job_id']}", timeout=5).json()
    as_trial = np.array([v for _, v in loss_history_artifact(stack.mlflow, trial_job["mlflow"]["run_id"])])
    as_job = np.array([v for _, v in loss_history_artifact(stack.mlflow, job["mlflow"]["run_id"])])
    assert len(as_trial) == len(as_job) == 240
    np.testing.assert_allclose(as_trial[:80], as_job[:80], atol=1e-5)
    assert trial_job["evaluation"]["echo_accuracy"] == pytest.approx(job["evaluation"]["echo_accuracy"], abs=0.01)


def test_cancelling_a_sweep_cancels_every_trial(stack):
    sweep = submit_sweep(stack.api, {"params": {"num_epochs": 300}, "grid": {"seed": [1, 2, 3]}})
    wait_for(
        lambda: requests.get(f"{stack.api}/sweeps/{sweep['id']}", timeout=5).json()["progress"]["fraction"] > 0,
        120,
        "the sweep training",
    )
    resp = requests.delete(f"{stack.api}/sweeps/{sweep['id']}", timeout=10)
    assert resp.status_code in (200, 202), resp.text
    done = wait_sweep(stack.api, sweep["id"], FINISHED, timeout=60)
    assert done["status"] == "cancelled" and {t["status"] for t in done["trials"]} == {"cancelled"}
    assert done["best"] is None


@pytest.fixture(scope="module")
def halving_sweep(stack) -> dict:
    """Four learning rates, rungs after epochs 1 and 2 (η = 2): two trials pruned at the first, one at the second."""
    sweep = submit_sweep(
        stack.api,
        {
            "name": "halving test",
            "params": {**BASE, "seed": 1},
            "grid": {"learning_rate": [0.01, 0.03, 0.3, 1.0]},
            "scheduler": {"type": "halving", "min_epochs": 1, "reduction": 2},
        },
    )
    done = wait_sweep(stack.api, sweep["id"], FINISHED)
    assert done["status"] == "succeeded", (done, stack.logs()[-4000:])
    return done


def test_a_halving_sweep_prunes_at_its_rungs_and_ranks_the_pruned_below(stack, halving_sweep):
    trials = halving_sweep["trials"]
    assert [t["status"] for t in trials] == ["succeeded"] * 4 and halving_sweep["progress"]["fraction"] == 1.0
    assert sorted((t["rung"], t["pruned"]) for t in trials) == [(1, True), (1, True), (2, False), (2, True)]
    for t in trials:
        job = requests.get(f"{stack.api}/jobs/{t['job_id']}", timeout=5).json()
        assert [r["rung"] for r in job["rungs"]] == list(range(1, t["rung"] + 1)) == [r["rung"] for r in t["rungs"]]
        assert [r["epoch"] for r in job["rungs"]] == list(range(1, t["rung"] + 1))
        first = sorted(trials, key=lambda o: (-o["rungs"][0]["echo_accuracy"], o["rungs"][0]["loss"], o["trial"]))
        assert {o["trial"] for o in first[2:]} == {o["trial"] for o in trials if o["rung"] == 1}  # the worse half
        if t["pruned"]:
            assert job["pruned"] == t["rung"] and job["progress"]["epoch"] == t["rung"]
            last = job["rungs"][-1]
            assert (job["evaluation"]["echo_accuracy"], job["evaluation"]["loss"]) == (
                last["echo_accuracy"],
                last["loss"],
            )
            losses = loss_history_artifact(stack.mlflow, job["mlflow"]["run_id"])
            assert len(losses) == 80 * t["rung"]  # it trained up to its rung, no further
        else:
            assert job["pruned"] is None and job["progress"]["epoch"] == 3
    board = halving_sweep["leaderboard"]
    assert [(r["rung"], r["pruned"]) for r in board] == [(2, False), (2, True), (1, True), (1, True)]
    assert halving_sweep["best"]["trial"] == board[0]["trial"] and halving_sweep["best"]["model"]


def test_a_halving_sweeps_mlflow_runs_show_the_rungs_and_tag_the_pruned(stack, halving_sweep):
    client = MlflowClient(stack.mlflow)
    parent = halving_sweep["mlflow"]["run_id"]
    assert {"rungs.png", "leaderboard.json"} <= {a.path for a in client.list_artifacts(parent)}
    assert "halving" in client.get_run(parent).data.params["scheduler"]
    for t in halving_sweep["trials"]:
        run_id = requests.get(f"{stack.api}/jobs/{t['job_id']}", timeout=5).json()["mlflow"]["run_id"]
        tags = client.get_run(run_id).data.tags
        assert (tags.get("pruned"), tags.get("pruned_rung")) == (
            ("true", str(t["rung"])) if t["pruned"] else (None, None)
        )
        history = client.get_metric_history(run_id, "rung_eval_echo_accuracy")
        assert sorted(m.step for m in history) == [80 * r["epoch"] for r in t["rungs"]]
        # A pruned trial's run is wrapped up at its rung (closed while the others train): all of it is there.
        run = client.get_run(run_id)
        trained = 80 * (t["rungs"][-1]["epoch"] if t["pruned"] else 3)
        assert (
            run.info.status == "FINISHED" and run.data.metrics["eval_echo_accuracy"] == t["evaluation"]["echo_accuracy"]
        )
        assert [m.step for m in client.get_metric_history(run_id, "eval_loss")] == [trained]
        assert len(loss_history_artifact(stack.mlflow, run_id)) == trained


def test_a_trial_pruned_then_cancelled_ends_cancelled_in_its_job_and_its_run(stack):
    """A pruned trial's run is closed FINISHED at its rung; cancelled before the group ends, it is closed KILLED."""
    sweep = submit_sweep(
        stack.api,
        {
            "params": {"num_epochs": 300, "seed": 1},
            "grid": {"learning_rate": [0.01, 0.3]},
            "scheduler": {"type": "halving", "min_epochs": 1, "reduction": 2},
        },
    )
    url = f"{stack.api}/sweeps/{sweep['id']}"
    wait_for(lambda: any(t["pruned"] for t in requests.get(url, timeout=5).json()["trials"]), 120, "a trial pruned")
    assert requests.delete(url, timeout=10).status_code in (200, 202)
    done = wait_sweep(stack.api, sweep["id"], FINISHED, timeout=60)
    assert done["status"] == "cancelled" and {t["status"] for t in done["trials"]} == {"cancelled"}
    client = MlflowClient(stack.mlflow)
    for t in done["trials"]:
        run_id = requests.get(f"{stack.api}/jobs/{t['job_id']}", timeout=5).json()["mlflow"]["run_id"]
        assert client.get_run(run_id).info.status == "KILLED", t


TPE = {
    "params": {**BASE, "num_epochs": 2, "seed": 1},
    "random": {
        "trials": 4,
        "batch": 2,
        "seed": 5,
        "sampler": "tpe",
        "space": {"learning_rate": {"low": 0.03, "high": 1.0, "log": True}, "state_size": {"values": [4]}},
    },
}


@pytest.fixture(scope="module")
def tpe_sweeps(stack) -> list[dict]:
    """The same tpe search twice at once: two batches of two trials each, the second asked from the first's scores."""
    made = [submit_sweep(stack.api, {**TPE, "name": f"tpe {i}"}) for i in range(2)]
    for sweep in made:
        assert (sweep["progress"]["trials"], sweep["progress"]["planned"], sweep["groups"]) == (2, 4, [[0, 1]])
    done = [wait_sweep(stack.api, s["id"], FINISHED) for s in made]
    for sweep in done:
        assert sweep["status"] == "succeeded", (sweep, stack.logs()[-4000:])
    return done


def test_a_tpe_sweep_trains_its_batches_one_after_the_other_to_the_end(stack, tpe_sweeps):
    sweep = tpe_sweeps[0]
    assert sweep["progress"] == {"trials": 4, "planned": 4, "finished": 4, "succeeded": 4, "fraction": 1.0}
    assert (sweep["batches"], sweep["groups"]) == (2, [[0, 1], [2, 3]])
    assert [(t["trial"], t["group"], t["status"]) for t in sweep["trials"]] == [
        (i, i // 2, "succeeded") for i in range(4)
    ]
    first = max(
        requests.get(f"{stack.api}/jobs/{t['job_id']}", timeout=5).json()["finished_at"] for t in sweep["trials"][:2]
    )
    second = min(
        requests.get(f"{stack.api}/jobs/{t['job_id']}", timeout=5).json()["created_at"] for t in sweep["trials"][2:]
    )
    assert first <= second, "the second batch is made once the first has ended"
    assert len(sweep["leaderboard"]) == 4 and sweep["best"]["model"]
    client = MlflowClient(stack.mlflow)
    parent = client.get_run(sweep["mlflow"]["run_id"])
    assert parent.info.status == "FINISHED" and (parent.data.params["sampler"], parent.data.params["trials"]) == (
        "tpe",
        "4",
    )
    for trial in sweep["trials"]:
        run_id = requests.get(f"{stack.api}/jobs/{trial['job_id']}", timeout=5).json()["mlflow"]["run_id"]
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_the_same_tpe_request_makes_the_same_trials(tpe_sweeps):
    first, again = ([t["values"] for t in s["trials"]] for s in tpe_sweeps)
    assert first == again and len({v["learning_rate"] for v in first}) == 4


def test_cancelling_a_tpe_sweep_makes_no_further_batch(stack):
    body = {**TPE, "params": {**TPE["params"], "num_epochs": 300}}
    sweep = submit_sweep(stack.api, body)
    wait_for(
        lambda: requests.get(f"{stack.api}/sweeps/{sweep['id']}", timeout=5).json()["progress"]["fraction"] > 0,
        120,
        "the first batch training",
    )
    assert requests.delete(f"{stack.api}/sweeps/{sweep['id']}", timeout=10).status_code in (200, 202)
    done = wait_sweep(stack.api, sweep["id"], FINISHED, timeout=60)
    assert done["status"] == "cancelled" and [t["status"] for t in done["trials"]] == ["cancelled"] * 2
    assert (done["progress"]["trials"], done["progress"]["planned"], done["batches"]) == (2, 4, 1)
    assert done["best"] is None
