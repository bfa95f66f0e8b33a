"""Worker loss and time limits, made to happen on the running stack: SIGKILL the process training a job."""

import os
import signal

import requests
from mlflow.tracking import MlflowClient

from tests.support import loss_history_artifact, loss_steps, submit, wait_for, wait_status

# About 6 s of training: checkpoints every 2 s, so a kill at 40 % finds one.
RESUMABLE = dict(num_epochs=60, total_series_length=200_000, truncated_backprop_length=64, seed=21)


def job(stack, job_id: str) -> dict:
    return requests.get(f"{stack.api}/jobs/{job_id}", timeout=5).json()


def kill_when(stack, job_id: str, ready) -> dict:
    """SIGKILL the process training the job once ready(job) holds; returns the job as it was."""

    def reached() -> dict | None:
        current = job(stack, job_id)
        return current if ready(current) else None

    current = wait_for(reached, 180, f"job {job_id} to reach the kill point", 0.05)
    os.kill(current["worker"]["pid"], signal.SIGKILL)
    return current


def loss_history(stack, run_id: str) -> list[tuple[int, float]]:
    history = MlflowClient(tracking_uri=stack.mlflow).get_metric_history(run_id, "loss")
    return sorted((m.step, m.value) for m in history)


def test_a_job_whose_worker_is_killed_resumes_and_logs_every_step_once(stack, redis_client):
    victim = submit(stack.api, **RESUMABLE)
    checkpoint_key = f"echo-rnn:checkpoint:{victim['id']}"
    killed = kill_when(
        stack, victim["id"], lambda j: j["progress"]["fraction"] >= 0.4 and redis_client.exists(checkpoint_key)
    )
    done = wait_status(stack.api, victim["id"], {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2 and len(done["resumed"]) == 1
    assert 0 < done["resumed"][0]["step"] <= killed["progress"]["step"]
    assert done["mlflow"]["run_id"] == killed["mlflow"]["run_id"], "resumed in the same MLflow run"
    assert not redis_client.exists(checkpoint_key)

    steps = RESUMABLE["num_epochs"] * (RESUMABLE["total_series_length"] // 5 // 64)
    resumed = loss_history(stack, done["mlflow"]["run_id"])
    assert [s for s, _ in resumed] == loss_steps(steps), "each bucket of steps exactly once"
    every_step = loss_history_artifact(stack.mlflow, done["mlflow"]["run_id"])
    assert [s for s, _ in every_step] == list(range(steps)), "each step exactly once in the full history"
    # The same job never interrupted has the very same loss curve.
    twin = wait_status(stack.api, submit(stack.api, **RESUMABLE)["id"], {"succeeded"}, timeout=300)
    assert resumed == loss_history(stack, twin["mlflow"]["run_id"])
    assert every_step == loss_history_artifact(stack.mlflow, twin["mlflow"]["run_id"])


def test_a_job_that_keeps_losing_its_worker_ends_failed(stack):
    victim = submit(stack.api, **{**RESUMABLE, "seed": 22})
    for attempt in (1, 2, 3):
        kill_when(stack, victim["id"], lambda j, a=attempt: j["attempts"] == a and j["metrics"]["loss"] is not None)
    done = wait_status(stack.api, victim["id"], {"succeeded", "failed", "cancelled"}, timeout=180)
    assert done["status"] == "failed" and "lost 3 times" in done["error"]
    run = MlflowClient(tracking_uri=stack.mlflow).get_run(done["mlflow"]["run_id"])
    assert run.info.status == "FAILED"


def test_a_job_past_its_time_limit_fails_with_the_reason(stack):
    slow = submit(stack.api, num_epochs=2000, total_series_length=20_000, seed=4, time_limit_s=8)
    done = wait_status(stack.api, slow["id"], {"succeeded", "failed", "cancelled"}, timeout=120)
    assert done["status"] == "failed" and "time limit of 8 s" in done["error"]
    assert done["progress"]["fraction"] < 1
