"""Versions registered before workers wrote ONNX graphs: refused naming the command, served once it ran."""

import subprocess
import time
import uuid
from pathlib import Path

import mlflow
import requests
from mlflow.tracking import MlflowClient
from redis import Redis

from contract import provenance
from tests.support import ROOT, wait_for


def test_an_older_version_is_refused_until_the_backfill_adds_its_graph(stack, trained_job, tmp_path):
    client = MlflowClient(tracking_uri=stack.mlflow)
    ours = trained_job["model"]
    location = client.get_model_version_download_uri("echo-rnn", ours["version"])
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(tmp_path / "model"), tracking_uri=stack.mlflow
        )
    )
    (local / provenance.SERVING_FILE).unlink()  # as workers saved models before they wrote the graph
    # A run and a job id of its own: the trained job keeps naming only its version (other tests ask for it).
    job_id = f"older-{uuid.uuid4()}"
    run_id = client.create_run(trained_job["mlflow"]["experiment_id"], tags={"job_id": job_id}).info.run_id
    client.log_artifacts(run_id, str(local), "older-model")
    older = client.create_model_version(
        "echo-rnn", f"{client.get_run(run_id).info.artifact_uri}/older-model", run_id=run_id, tags={"job_id": job_id}
    ).version
    redis = Redis.from_url(stack.env["REDIS_URL"])
    provenance.record(
        redis, "echo-rnn", provenance.Provenance("echo-rnn", older, job_id, run_id, provenance.digest(local))
    )

    def ask(version: str) -> requests.Response:
        return requests.get(
            f"{stack.api}/predict",
            params={"sequence": "0110100111", "model": f"models:/echo-rnn/{version}"},
            timeout=60,
        )

    refused = ask(older)
    assert refused.status_code == 403 and "echo-rnn models backfill" in refused.json()["detail"], refused.text
    cli = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "echo-rnn"), "--api", stack.api, "models", "backfill"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0 and "queued as task" in cli.stdout, cli.stdout + cli.stderr
    wait_for(lambda: provenance.lookup(redis, "echo-rnn", "echo-rnn", older).serving_digest, 180, "the backfill task")
    assert provenance.lookup(redis, "echo-rnn", "echo-rnn", older).serving_uri.endswith(
        f"older-model/{provenance.SERVING_FILE}"
    )
    started = time.monotonic()
    served = wait_for(lambda: (r := ask(older)).status_code == 200 and r, 30, "the older version served")
    assert time.monotonic() - started < 30
    assert served.json()["probabilities"] == ask(ours["version"]).json()["probabilities"], "the same network"
