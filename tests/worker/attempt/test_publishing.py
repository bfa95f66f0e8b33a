"""Which group logs its best trial's model, against a real Redis (records written as attempts leave them): a group
whose best ranks below a best another group logged and saw succeed logs none; one that may still be the sweep's
best does."""

import json

import pytest

from contract.sweep import SweepRequest
from contract.sweep_record import Sweep, rank_key
from contract.sweep_store import SweepStore
from tests.worker.attempt.records import end_trial
from worker.attempt.publishing import outranked_by
from worker.retry import redis_outage


@pytest.fixture
def sweep(sweeps: SweepStore) -> Sweep:
    """Three groups of two trials."""
    body = SweepRequest.model_validate({"params": {"num_epochs": 2}, "grid": {"seed": list(range(6))}})
    return sweeps.create(body, body.trials(), [[0, 1], [2, 3], [4, 5]])


def logged_best(
    sweeps: SweepStore,
    sweep: Sweep,
    group: int,
    trial: int,
    accuracy: float,
    status: str = "succeeded",
    pruned_at: int | None = None,
) -> None:
    """Group's attempt has logged trial's model and recorded it; the trial has ended with status."""
    job_id, scores = sweep.trials[trial].job_id, {"echo_accuracy": accuracy, "loss": 1 - accuracy}
    best = {"trial": trial, "job_id": job_id, "run_id": "r", "logged": {}, **scores}
    sweeps.redis.hset(sweeps.key(sweep.id), f"group_best_{group}", json.dumps(best))
    end_trial(sweeps.jobs, job_id, status, accuracy, pruned_at)


def ranked_below(
    sweeps: SweepStore, sweep: Sweep, group: int, trial: int, accuracy: float, pruned: int | None = None
) -> int | None:
    """The trial another group logged that ranks above group's best (trial, its scores), as outranked_by finds it."""
    key = rank_key(pruned, accuracy, 1 - accuracy, trial)
    return outranked_by(sweeps, redis_outage("redis://127.0.0.1", 0), sweep.id, group, key)


def test_a_group_whose_best_ranks_below_another_groups_logged_best_logs_none(sweeps, sweep):
    assert ranked_below(sweeps, sweep, 1, 2, 0.9) is None, "nothing logged yet: it may be the sweep's best"
    logged_best(sweeps, sweep, 0, 1, 0.95)
    assert ranked_below(sweeps, sweep, 1, 2, 0.9) == 1
    assert ranked_below(sweeps, sweep, 1, 2, 0.97) is None
    assert ranked_below(sweeps, sweep, 1, 2, 0.95) == 1, "a tie goes to the lower trial number, as in the leaderboard"
    assert ranked_below(sweeps, sweep, 1, 0, 0.95) is None
    assert ranked_below(sweeps, sweep, 0, 0, 0.9) is None, (
        "its own group's best, from an earlier attempt, is not another's"
    )


def test_a_pruned_best_or_one_whose_trial_did_not_succeed_outranks_nothing_it_should_not(sweeps, sweep):
    logged_best(sweeps, sweep, 0, 1, 0.99, pruned_at=1)
    assert ranked_below(sweeps, sweep, 1, 2, 0.9) is None, "a pruned trial ranks below one that went further"
    assert ranked_below(sweeps, sweep, 1, 2, 0.9, pruned=1) == 1
    logged_best(sweeps, sweep, 2, 4, 1.0, status="failed")
    assert ranked_below(sweeps, sweep, 1, 2, 0.9, pruned=1) == 1, "a failed trial is not in the leaderboard"
