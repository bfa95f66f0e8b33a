"""An attempt's runs on the real MLflow server: none is left RUNNING when another cannot be opened,
and a run whose attempt lost its leases sends nothing more."""

import uuid

import pytest

from contract.clock import now
from contract.fence import LeaseLost
from contract.job import Job, JobProgress, TrialOf
from worker.attempt import runs
from worker.retry import RedisUnavailable
from worker.tracking.tracked_run import TrackedRun


def jobs(n: int) -> list[Job]:
    return [
        Job(
            id=str(uuid.uuid4()), status="running", params={}, created_at=now(), progress=JobProgress(epochs=1, steps=1)
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize(
    "error, status",
    [(RuntimeError("MLflow refused this one"), "FAILED"), (RedisUnavailable("Redis unreachable for 600 s"), "RUNNING")],
)
def test_runs_opened_before_one_fails_to_open_are_closed_unless_the_attempt_is_left_for_another_worker(
    settings, client, error, status
):
    """Any failure ends the attempt (its runs closed FAILED); Redis away leaves it, and its runs, to another worker."""
    trials = jobs(3)
    parent = TrackedRun(settings, "sweep", {})
    opened: list[TrackedRun] = []

    original = TrackedRun.__init__

    def init(self, settings_, job_id, *args, **kwargs):
        if job_id == trials[1].id:
            raise error
        original(self, settings_, job_id, *args, **kwargs)
        opened.append(self)

    TrackedRun.__init__ = init
    try:
        with pytest.raises(type(error)):
            runs.open_runs(settings, trials, parent.run_id, lambda: None)
    finally:
        TrackedRun.__init__ = original
    parent.end("FAILED")
    assert len(opened) == 2
    assert [client.get_run(r.run_id).info.status for r in opened] == [status, status]
    for run in opened:
        run.sender._thread.join(5)
        assert not run.sender._thread.is_alive(), "each run stops sending"


def test_a_run_whose_leases_are_lost_sends_nothing_more_and_is_left_open(settings, client):
    lost: list[bool] = []

    def guard() -> None:
        if lost:
            raise LeaseLost("taken over")

    [run] = runs.open_runs(settings, jobs(1), None, guard)
    run.add("loss", [0.5, 0.4], 0)
    run.flush()
    lost.append(True)
    run.add("loss", [0.3], 2)
    with pytest.raises(LeaseLost):
        run.flush()
    with pytest.raises(LeaseLost):
        runs.close(run, "FINISHED")
    run.abandon()
    assert [m.step for m in client.get_metric_history(run.run_id, "loss")] == [0, 1]
    assert client.get_run(run.run_id).info.status == "RUNNING", "left to the attempt that took the job over"


def test_a_groups_runs_are_children_in_the_parents_experiment_with_every_parameter(settings, client):
    """Created with a request each (no experiment lookup), their parameters sent with their first points."""
    trials = [
        job.model_copy(
            update={"params": {"seed": i, "learning_rate": 0.3}, "sweep": TrialOf(sweep_id="s", trial=i, group=0)}
        )
        for i, job in enumerate(jobs(3))
    ]
    other = client.create_experiment(f"worker-tests-{uuid.uuid4().hex[:8]}")
    parent = client.create_run(other).info.run_id
    opened = runs.open_runs(settings, trials, parent, lambda: None, other)
    for run in opened:
        run.add("loss", [0.5, 0.4], 0)
    assert runs.close_all(opened, ["FINISHED"] * 3) == [None] * 3
    for i, run in enumerate(opened):
        found = client.get_run(run.run_id)
        assert found.info.experiment_id == other and found.info.status == "FINISHED"
        assert found.data.params == {"seed": str(i), "learning_rate": "0.3"}
        tags = found.data.tags
        assert (tags["mlflow.parentRunId"], tags["trial"], tags["mlflow.runName"]) == (parent, str(i), f"trial-{i}")
        assert [m.step for m in client.get_metric_history(run.run_id, "loss")] == [0, 1]
