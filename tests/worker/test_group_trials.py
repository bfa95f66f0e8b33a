"""A group's child runs on the real MLflow server: none is left RUNNING when another cannot be opened."""

import uuid

import pytest

from contract.clock import now
from contract.job import Job, JobProgress
from worker.group_trials import _open_all
from worker.retry import RedisUnavailable
from worker.run_logger import RunLogger


@pytest.mark.parametrize("error, status", [(RuntimeError("MLflow refused this one"), "FAILED"),
                                           (RedisUnavailable("Redis unreachable for 600 s"), "RUNNING")])
def test_runs_opened_before_one_fails_to_open_are_closed_unless_the_group_is_left_for_another_worker(
        settings, client, error, status):
    """Any failure ends the group (its runs closed FAILED); Redis away leaves it, and its runs, to another worker."""
    jobs = [Job(id=str(uuid.uuid4()), status="running", params={}, created_at=now(), progress=JobProgress(epochs=1, steps=1))
            for _ in range(3)]
    opened: list[RunLogger] = []

    def open_run(job: Job, parent_run_id: str) -> RunLogger:
        if job is jobs[1]:
            raise error
        opened.append(RunLogger(settings, job.id, {}, tags={"mlflow.parentRunId": parent_run_id}))
        return opened[-1]

    parent = RunLogger(settings, "sweep", {})
    with pytest.raises(type(error)):
        _open_all(open_run, jobs, parent.run_id)
    parent.end("FAILED")
    assert len(opened) == 2
    assert [client.get_run(r.run_id).info.status for r in opened] == [status, status]
    for run in opened:
        run.sender._thread.join(5)
        assert not run.sender._thread.is_alive(), "each run stops sending"
