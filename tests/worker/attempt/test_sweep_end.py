"""The sweep's end against a real Redis and MLflow server, its trials' records written as their attempts leave them
(no training): the best logged trial registered and recorded (a pruned trial ranked below those that went
further), a sweep whose trials all failed or that was cancelled ended so, one finisher at a time, nothing
done before every trial has ended, and the parent run opened once."""

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import mlflow.artifacts
import numpy as np
import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from contract import provenance
from contract.sweep import SweepRequest
from contract.sweep_record import Sweep
from contract.sweep_store import SweepStore
from tests.worker.attempt.records import end_trial
from worker.attempt import sweep_end
from worker.settings import WorkerSettings


@pytest.fixture
def own_model(settings) -> WorkerSettings:
    """The settings with a registered model of the test's own (the stack's champion is left alone)."""
    return settings.model_copy(
        update={"registered_model": f"unit-{uuid.uuid4().hex[:8]}", "champion_min_accuracy": 0.5}
    )


def new_sweep(sweeps: SweepStore, groups: list[list[int]], **request: Any) -> Sweep:
    """A sweep of one trial per seed, queued as the API records it."""
    trials = sum(len(g) for g in groups)
    body = SweepRequest.model_validate({"params": {"num_epochs": 2}, "grid": {"seed": list(range(trials))}, **request})
    return sweeps.create(body, body.trials(), groups)


def logged_model(client: MlflowClient, run_id: str) -> dict:
    """A model logged into a trial's run, as publish_group records it (a real logged model; no files needed)."""
    experiment_id = client.get_run(run_id).info.experiment_id
    model = client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return {"model_uri": f"models:/{model.model_id}", "model_id": model.model_id, "digest": uuid.uuid4().hex}


def group_best(client: MlflowClient, experiment_id: str, sweep: Sweep, trial: int, accuracy: float) -> dict:
    """What a group's attempt records of its best trial: the model logged into its run, and its scores."""
    run_id = client.create_run(experiment_id).info.run_id
    return {
        "trial": trial,
        "job_id": sweep.trials[trial].job_id,
        "run_id": run_id,
        "logged": logged_model(client, run_id),
        "echo_accuracy": accuracy,
        "loss": 1 - accuracy,
    }


def curves(sweep: Sweep, group: int) -> dict[str, list[float]]:
    """A group's thinned loss curves, as its attempt records them beside its best."""
    return sweep_end.thin_curves({t: np.linspace(0.7, 0.1, 300) for t in sweep.groups[group]})


def parent_files(settings: WorkerSettings, run_id: str) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, dst_path=tmp, tracking_uri=settings.mlflow_tracking_uri
        )
        return {p.name: p.read_bytes() for p in Path(path).iterdir() if p.is_file()}


def test_the_best_logged_trial_is_registered_and_a_pruned_one_ranks_below_those_that_went_further(
    sweeps, store, own_model, client
):
    """Trial 0, pruned at rung 1, scored highest; trials 1 and 2 trained to the end: 2 is the best, registered."""
    sweep = new_sweep(sweeps, [[0], [1, 2]])
    link = sweep_end.parent_run(sweeps, own_model, sweep.id)
    sweeps.move(sweep.id, "running")
    end_trial(store, sweep.trials[0].job_id, "succeeded", 1.0, pruned_at=1)
    end_trial(store, sweep.trials[1].job_id, "succeeded", 0.8)
    end_trial(store, sweep.trials[2].job_id, "succeeded", 0.9)
    best = group_best(client, link["experiment_id"], sweep, 2, 0.9)
    sweeps.update(
        sweep.id,
        group_best_0=group_best(client, link["experiment_id"], sweep, 0, 1.0),
        group_best_1=best,
        curves_0=curves(sweep, 0),
        curves_1=curves(sweep, 1),
    )

    assert sweep_end.finish(sweeps, own_model, sweep.id) == "succeeded"

    ended = sweeps.get(sweep.id)
    assert ended is not None and ended.status == "succeeded" and ended.error is None and ended.finished_at
    assert [r.trial for r in ended.leaderboard] == [2, 1, 0]
    assert ended.best is not None and (ended.best.trial, ended.best.job_id) == (2, best["job_id"])
    model = ended.best.model
    assert model is not None and model.name == own_model.registered_model and model.promoted
    assert store.get(best["job_id"]).model == model, "the best trial's job names its version too"
    version = client.get_model_version(model.name, model.version)
    assert (version.run_id, version.tags["job_id"]) == (best["run_id"], best["job_id"])
    assert [v.version for v in client.search_model_versions(f"name = '{model.name}'")] == [model.version]
    recorded = provenance.lookup(store.redis, store.prefix, model.name, model.version)
    assert recorded is not None and (recorded.job_id, recorded.digest) == (best["job_id"], best["logged"]["digest"])
    assert client.get_run(link["run_id"]).info.status == "FINISHED"
    files = parent_files(own_model, link["run_id"])
    assert [row["trial"] for row in json.loads(files["leaderboard.json"])] == [2, 1, 0]
    assert {"leaderboard.csv", "loss_curves.png", "rungs.png"} <= files.keys()
    assert not store.redis.exists(sweeps.finish_lease_key(sweep.id)), "its lease released"
    assert not store.redis.sismember(sweeps.active_key, sweep.id)

    assert sweep_end.finish(sweeps, own_model, sweep.id) is None, "ended once"
    assert len(client.search_model_versions(f"name = '{model.name}'")) == 1


def test_a_sweep_whose_trials_all_failed_ends_failed_with_its_parent_run(sweeps, store, own_model, client):
    sweep = new_sweep(sweeps, [[0, 1]])
    link = sweep_end.parent_run(sweeps, own_model, sweep.id)
    sweeps.move(sweep.id, "running")
    for trial in sweep.trials:
        end_trial(store, trial.job_id, "failed")

    assert sweep_end.finish(sweeps, own_model, sweep.id) == "failed"

    ended = sweeps.get(sweep.id)
    assert ended is not None and (ended.status, ended.error, ended.best) == ("failed", "no trial succeeded", None)
    assert client.get_run(link["run_id"]).info.status == "FAILED"
    assert json.loads(parent_files(own_model, link["run_id"])["leaderboard.json"]) == []
    assert client.search_registered_models(f"name = '{own_model.registered_model}'") == []


def test_a_cancelled_sweep_registers_nothing_even_with_a_trial_that_succeeded(sweeps, store, own_model, client):
    sweep = new_sweep(sweeps, [[0, 1]])
    link = sweep_end.parent_run(sweeps, own_model, sweep.id)
    sweeps.move(sweep.id, "running")
    end_trial(store, sweep.trials[0].job_id, "succeeded", 0.9)
    end_trial(store, sweep.trials[1].job_id, "cancelled")
    sweeps.update(
        sweep.id, group_best_0=group_best(client, link["experiment_id"], sweep, 0, 0.9), curves_0=curves(sweep, 0)
    )
    sweeps.request_cancel(sweep.id)

    assert sweep_end.finish(sweeps, own_model, sweep.id) == "cancelled"

    ended = sweeps.get(sweep.id)
    assert ended is not None and (ended.status, ended.error, ended.best) == ("cancelled", None, None)
    assert [r.trial for r in ended.leaderboard] == [0], "its leaderboard still shows what finished"
    assert client.get_run(link["run_id"]).info.status == "KILLED"
    assert client.search_registered_models(f"name = '{own_model.registered_model}'") == []
    assert store.get(sweep.trials[0].job_id).model is None


def test_the_best_trial_without_a_logged_model_gives_way_to_the_next(sweeps, store, own_model, client):
    """A group that could not log its best model (its end fields lost) leaves the next-ranked logged one the best;
    without a parent run the sweep still ends (its files have nowhere to go)."""
    sweep = new_sweep(sweeps, [[0], [1]])
    sweeps.move(sweep.id, "running")
    end_trial(store, sweep.trials[0].job_id, "succeeded", 0.95)
    end_trial(store, sweep.trials[1].job_id, "succeeded", 0.7)
    experiment = client.get_experiment_by_name(own_model.mlflow_experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(own_model.mlflow_experiment)
    sweeps.update(sweep.id, group_best_1=group_best(client, experiment_id, sweep, 1, 0.7))

    assert sweep_end.finish(sweeps, own_model, sweep.id) == "succeeded"

    ended = sweeps.get(sweep.id)
    assert ended is not None and ended.best is not None and ended.best.trial == 1
    assert ended.best.model is not None and ended.best.model.promoted, "0.7 ≥ the test's threshold of 0.5"


def test_nothing_is_done_before_every_trial_has_ended(sweeps, store, own_model):
    sweep = new_sweep(sweeps, [[0, 1]])
    sweeps.move(sweep.id, "running")
    end_trial(store, sweep.trials[0].job_id, "succeeded", 0.9)
    store.move(sweep.trials[1].job_id, "running")

    assert sweep_end.finish(sweeps, own_model, sweep.id) is None

    assert sweeps.get(sweep.id).status == "running"
    assert not store.redis.exists(sweeps.finish_lease_key(sweep.id)), "the next finisher may try"
    assert store.redis.sismember(sweeps.active_key, sweep.id)


def test_one_finisher_at_a_time(sweeps, store, own_model):
    sweep = new_sweep(sweeps, [[0]])
    sweeps.move(sweep.id, "running")
    end_trial(store, sweep.trials[0].job_id, "failed")
    key = sweeps.finish_lease_key(sweep.id)
    store.redis.set(key, "another finisher", px=30_000)

    assert sweep_end.finish(sweeps, own_model, sweep.id) is None

    assert sweeps.get(sweep.id).status == "running"
    assert store.redis.get(key) == b"another finisher", "its lease left to it"
    store.redis.delete(key)
    assert sweep_end.finish(sweeps, own_model, sweep.id) == "failed", "once it is gone, the next one ends the sweep"


def test_the_parent_run_is_opened_once_with_the_searchs_parameters(sweeps, own_model, client):
    sweep = new_sweep(sweeps, [[0, 1, 2]], name="lr-search")
    link = sweep_end.parent_run(sweeps, own_model, sweep.id)
    assert sweep_end.parent_run(sweeps, own_model, sweep.id) == link
    assert sweeps.raw(sweep.id)["mlflow"] == link
    run = client.get_run(link["run_id"])
    assert run.info.status == "RUNNING", "left open for the sweep's end"
    assert (run.data.tags["sweep_id"], run.data.tags["mlflow.runName"]) == (sweep.id, "lr-search")
    params = run.data.params
    assert (params["trials"], params["search"], params["base.num_epochs"]) == ("3", "grid", "2")
    assert json.loads(params["space"]) == {"seed": [0, 1, 2]}


def test_curves_longer_than_the_figure_are_thinned_to_bucket_means():
    short, long = np.array([0.7, 0.69, 0.5]), np.arange(1000, dtype=float)
    thinned = sweep_end.thin_curves({3: short, 5: long})
    assert thinned["3"] == [0.7, 0.69, 0.5]
    assert len(thinned["5"]) == sweep_end.CURVE_POINTS
    assert thinned["5"][:2] == [2.0, 7.0] and thinned["5"][-1] == 997.0, "means of buckets of five steps"
