"""A halving group's rungs as an attempt records them, against a real Redis and MLflow server (rung reports made
directly, no training): each scored trial's rungs in its record, a pruned one's rung and evaluation and its run's
tags, rung metrics in each run; a resumed attempt that recomputes a rung writes the same and logs no point twice, and
sends what its earlier attempt did not."""

from collections.abc import Iterator

import pytest

from contract.fence import LeaseLost
from contract.job_store import JobStore
from contract.params import TrainingParams
from contract.sweep import SweepRequest
from contract.sweep_record import Sweep
from contract.sweep_store import SweepStore
from worker.attempt.attempt import Attempt, Context
from worker.attempt.claim import claim
from worker.attempt.lease import LeaseKeeper
from worker.attempt.rungs import Rungs
from worker.attempt.unit import Unit
from worker.engine.evaluate import HeldOutScores
from worker.engine.halving import RungReport
from worker.retry import redis_outage
from worker.settings import WorkerSettings
from worker.tracking.tracked_run import LOSS_HISTORY

PARAMS = {"num_epochs": 4, "total_series_length": 2_000}


@pytest.fixture
def sweep(store) -> Sweep:
    body = SweepRequest.model_validate({"params": PARAMS, "grid": {"seed": [1, 2, 3]}})
    return SweepStore(store).create(body, body.trials(), [[0, 1, 2]])


@pytest.fixture
def attempts(store, settings, sweep) -> Iterator[list[Attempt]]:
    """Attempts at the sweep's group (each new one once the last let its leases go), their runs open."""
    made: list[Attempt] = []
    yield made
    for attempt in made:
        attempt.ctx.keeper.stop(release=True)
        attempt.abandon()


def attempt_at(store: JobStore, settings: WorkerSettings, sweep: Sweep, made: list[Attempt]) -> Attempt:
    """An attempt as run_attempt starts it, up to its runs opened and recorded (where training would begin)."""
    if made:  # the last one's worker was lost
        made[-1].ctx.keeper.stop(release=True)
        made[-1].abandon()
    unit = Unit([t.job_id for t in sweep.trials], sweep.id, 0)
    retry = redis_outage(settings.redis_url, 0)
    claimed = claim(store, unit.job_ids, settings.lease_ttl_s, retry)
    assert claimed.fence is not None
    keeper = LeaseKeeper(store.redis, claimed.fence, settings.lease_ttl_s).start(claimed.taken_at)
    attempt = Attempt(Context(store, settings, unit, claimed, keeper, retry))
    made.append(attempt)
    attempt.jobs = [j for j in store.get_many(unit.job_ids) if j is not None]
    attempt.params = [TrainingParams.model_validate(j.params) for j in attempt.jobs]
    attempt.start_opening(None)
    attempt.runs_ready()
    return attempt


def scores(*accuracies: float | None) -> list[HeldOutScores | None]:
    return [HeldOutScores(a, 1 - a) if a is not None else None for a in accuracies]


def rung(n: int, accuracy: float) -> dict:
    return {"rung": n, "epoch": n, "echo_accuracy": accuracy, "loss": 1 - accuracy}


def test_each_scored_trial_keeps_its_rungs_and_a_pruned_one_its_rung_evaluation_and_tags(
    store, settings, sweep, attempts, client
):
    attempt = attempt_at(store, settings, sweep, attempts)
    on_rung = Rungs(attempt)
    on_rung(RungReport(1, 1, scores(0.6, 0.8, 0.9), pruned=[0]))
    on_rung(RungReport(2, 2, scores(None, 0.85, 0.95), pruned=[1]))
    closing = attempt.closing[0]
    attempt.close_early(0)  # as the group's end does for every trial but its best
    assert attempt.closing[0] is closing, "a pruned trial's run is closed once, not twice at once"

    jobs = [store.get(t.job_id) for t in sweep.trials]
    assert [[r.model_dump() for r in j.rungs] for j in jobs] == [
        [rung(1, 0.6)],
        [rung(1, 0.8), rung(2, 0.85)],
        [rung(1, 0.9), rung(2, 0.95)],
    ]
    assert [j.pruned for j in jobs] == [1, 2, None]
    assert [j.evaluation.echo_accuracy if j.evaluation else None for j in jobs] == [0.6, 0.85, None]
    assert [t.pruned for t in SweepStore(store).get(sweep.id).trials] == [True, True, False]
    steps = attempt.params[0].steps_per_epoch
    for run in attempt.runs:
        run.flush()
    histories = [client.get_metric_history(r.run_id, "rung_eval_echo_accuracy") for r in attempt.runs]
    assert [[(m.step, m.value) for m in h] for h in histories] == [
        [(steps, 0.6)],
        [(steps, 0.8), (2 * steps, 0.85)],
        [(steps, 0.9), (2 * steps, 0.95)],
    ]
    tags = [client.get_run(r.run_id).data.tags for r in attempt.runs]
    assert [(t.get("pruned"), t.get("pruned_rung"), t.get("pruned_epoch")) for t in tags] == [
        ("true", "1", "1"),
        ("true", "2", "2"),
        (None, None, None),
    ]


def test_a_resumed_attempt_recomputing_rungs_writes_the_same_and_logs_no_point_twice(
    store, settings, sweep, attempts, client
):
    first = attempt_at(store, settings, sweep, attempts)
    Rungs(first)(RungReport(1, 1, scores(0.6, 0.8, 0.9), pruned=[0]))
    for run in first.runs:
        run.flush()
    second = attempt_at(store, settings, sweep, attempts)
    assert second.ctx.claim.resumed and [r.run_id for r in second.runs] == [r.run_id for r in first.runs]
    on_rung = Rungs(second)
    on_rung(RungReport(1, 1, scores(0.6, 0.8, 0.9), pruned=[0]))  # from a checkpoint taken before rung 1
    on_rung(RungReport(2, 2, scores(None, 0.85, 0.95), pruned=[1]))
    for run in second.runs:
        run.flush()

    jobs = [store.get(t.job_id) for t in sweep.trials]
    assert [len(j.rungs) for j in jobs] == [1, 2, 2] and [j.pruned for j in jobs] == [1, 2, None]
    histories = [client.get_metric_history(r.run_id, "rung_eval_echo_accuracy") for r in second.runs]
    assert [[m.value for m in h] for h in histories] == [[0.6], [0.8, 0.85], [0.9, 0.95]]
    scored = [client.get_metric_history(r.run_id, "eval_echo_accuracy") for r in second.runs]
    assert [[m.value for m in h] for h in scored] == [[0.6], [0.85], []], "a pruned trial's scores are sent once"
    assert [LOSS_HISTORY in files(client, r.run_id) for r in second.runs] == [True, True, False]


def test_a_resumed_attempt_sends_the_loss_history_its_earlier_attempt_died_before_sending(
    store, settings, sweep, attempts, client, monkeypatch
):
    first = attempt_at(store, settings, sweep, attempts)
    monkeypatch.setattr(first.runs[0], "log_artifacts_later", lambda make_files: None)  # its worker died first
    Rungs(first)(RungReport(1, 1, scores(0.6, 0.8, 0.9), pruned=[0]))
    first.runs[0].flush()
    assert LOSS_HISTORY not in files(client, first.runs[0].run_id)
    second = attempt_at(store, settings, sweep, attempts)
    Rungs(second)(RungReport(1, 1, scores(0.6, 0.8, 0.9), pruned=[0]))
    second.runs[0].flush()

    assert [m.value for m in client.get_metric_history(second.runs[0].run_id, "eval_echo_accuracy")] == [0.6]
    assert LOSS_HISTORY in files(client, second.runs[0].run_id)


def files(client, run_id: str) -> list[str]:
    """The paths of a run's top-level artifacts."""
    return [f.path for f in client.list_artifacts(run_id)]


def test_a_rung_of_an_attempt_whose_lease_was_taken_writes_nothing(store, settings, sweep, attempts):
    attempt = attempt_at(store, settings, sweep, attempts)
    store.redis.set(store.lease_key(sweep.trials[2].job_id), "the attempt that took over", px=30_000)
    with pytest.raises(LeaseLost):
        Rungs(attempt)(RungReport(1, 1, scores(0.6, 0.8, 0.9), pruned=[0]))
    assert [(j.rungs, j.pruned) for j in store.get_many([t.job_id for t in sweep.trials]) if j] == [([], None)] * 3
