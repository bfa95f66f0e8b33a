"""A group's child runs on the real MLflow server: none is left RUNNING when another cannot be opened."""

import uuid

import pytest

from contract.clock import now
from contract.job import Job, JobProgress
from worker.group_trials import _open_all
from worker.run_logger import RunLogger


def test_runs_opened_before_one_fails_to_open_are_closed_failed(settings, client):
    jobs = [Job(id=str(uuid.uuid4()), status="running", params={}, created_at=now(), progress=JobProgress(epochs=1, steps=1))
            for _ in range(3)]
    opened: list[RunLogger] = []

    def open_run(job: Job, parent_run_id: str) -> RunLogger:
        if job is jobs[1]:
            raise RuntimeError("MLflow refused this one")
        opened.append(RunLogger(settings, job.id, {}, tags={"mlflow.parentRunId": parent_run_id}))
        return opened[-1]

    parent = RunLogger(settings, "sweep", {})
    with pytest.raises(RuntimeError, match="refused this one"):
        _open_all(open_run, jobs, parent.run_id)
    parent.end("FAILED")
    assert len(opened) == 2
    assert [client.get_run(r.run_id).info.status for r in opened] == ["FAILED", "FAILED"]
