"""A tpe search: its batches asked of Optuna's TPE rebuilt from the scores, validated at POST, written fenced."""

import math
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from contract.dispatch import Dispatch
from contract.fence import Fence, LeaseLost
from contract.job_store import JobStore
from contract.sweep import SweepRequest, group
from contract.sweep_batches import add_batch, pending
from contract.sweep_store import SweepStore

SPACE: dict[str, Any] = {
    "learning_rate": {"low": 0.01, "high": 1.0, "log": True},
    "init": {"values": ["tutorial", "glorot"]},
}
RANDOM: dict[str, Any] = {"trials": 5, "batch": 2, "seed": 7, "sampler": "tpe", "space": SPACE}
BODY: dict[str, Any] = {
    "params": {"num_epochs": 1, "total_series_length": 1000, "seed": 3},
    "random": RANDOM,
}


def loss(values: dict) -> float:
    """A made-up held-out loss, lowest at learning rate 0.1 with glorot."""
    return abs(math.log(values["learning_rate"] / 0.1)) + (values["init"] == "tutorial")


def search(**changes) -> SweepRequest:
    return SweepRequest.model_validate({**BODY, "random": {**RANDOM, **changes}})


def test_batches_are_asked_from_the_scores_and_the_same_scores_ask_the_same_trials():
    request = search(trials=32, batch=8)
    assert request.planned() == 32 and request.random.batch_count() == 4
    history: list[tuple[dict, float | None]] = []
    batches = []
    for number in range(4):
        asked = request.random.draw(number, history)
        assert asked == request.random.draw(number, list(history)), "rebuilt from the same scores: the same trials"
        assert len(asked) == 8 and len({v["learning_rate"] for v in asked}) == 8
        batches.append(asked)
        history += [(v, loss(v)) for v in asked]
    assert batches[0] == request.configurations()  # the first batch is the one POST draws
    # TPE learns from the scores: the last batch lies nearer the best than the random first one.
    assert sum(map(loss, batches[3])) < 0.6 * sum(map(loss, batches[0]))
    # Other scores, other trials; failed trials (None) are told failed, and asked around.
    flipped = [(v, -s) for v, s in history[:8]]
    assert request.random.draw(1, flipped) != batches[1]
    assert len(request.random.draw(1, [(v, None) for v, _ in history[:8]])) == 8


def test_the_last_batch_holds_what_is_left_and_other_seeds_draw_other_trials():
    request = search()
    first = request.configurations()
    second = request.random.draw(1, [(v, loss(v)) for v in first])
    third = request.random.draw(2, [(v, loss(v)) for v in [*first, *second]])
    assert (len(first), len(second), len(third), request.random.batch_count()) == (2, 2, 1, 3)
    assert search(seed=8).configurations() != first
    assert search(batch=None).random.batch_size() == 5  # the default batch (8), at most trials


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"random": {**RANDOM, "batch": 1, "sampler": "qmc"}}, "random.batch", "tpe"),
        ({"scheduler": {"type": "halving", "min_epochs": 1}}, "scheduler", "tpe"),
        # TPE draws later trials anywhere in the space: one at its edge that no job could train is refused now.
        (
            {"random": {**RANDOM, "space": {"batch_size": {"low": 1, "high": 67}}}},
            "params.total_series_length",
            "edge of the space (batch_size=67)",
        ),
        (
            {"random": {**RANDOM, "space": {"learning_rate": {"low": 0.5, "high": 10.5}}}},
            "random.space.learning_rate",
            "edge of the space",
        ),
    ],
)
def test_a_tpe_search_that_cannot_stand_names_its_field(change, field, words):
    with pytest.raises(ValidationError) as caught:
        SweepRequest.model_validate({**BODY, **change})
    error = caught.value.errors()[0]
    assert error["ctx"]["field"] == field and words in error["msg"]


@pytest.fixture
def sweeps(redis_client) -> SweepStore:
    return SweepStore(JobStore(redis_client, prefix=f"test-{uuid.uuid4().hex[:8]}", retention_s=60))


def created(sweeps: SweepStore, request: SweepRequest, owner: str = "bob"):
    trials = request.trials()
    return sweeps.create(request, trials, group(trials, 1), owner=owner, group_size=1)


def end_trials(sweeps: SweepStore, sweep_id: str, failed: int | None = None, uncounted: tuple[int, ...] = ()) -> None:
    """End the queued trials and count their groups as their attempts' ends do (but the uncounted groups)."""
    for trial in sweeps.get(sweep_id).trials:
        if trial.status == "queued":
            sweeps.jobs.move(trial.job_id, "running")
            ok = trial.trial != failed
            scores = {"echo_accuracy": 0.9, "loss": loss(trial.values)} if ok else None
            sweeps.jobs.move(trial.job_id, "succeeded" if ok else "failed", evaluation=scores)
            if trial.group not in uncounted:
                sweeps.group_finished(sweep_id, trial.group)


def lease(sweeps: SweepStore, sweep_id: str, token: str = "t-1") -> Fence:
    sweeps.redis.set(sweeps.finish_lease_key(sweep_id), token)
    return Fence(token, (sweeps.finish_lease_key(sweep_id),))


def next_batch(sweeps: SweepStore, sweep_id: str, fence: Fence) -> bool:
    sweep, record = sweeps.get(sweep_id), sweeps.raw(sweep_id)
    assert sweep is not None and record is not None
    return add_batch(sweeps, fence, sweep, record)


def test_a_batch_is_written_with_its_groups_queued_and_counted_once(sweeps):
    sweep = created(sweeps, search())
    assert (sweep.progress.trials, sweep.progress.planned, sweep.groups, sweep.batches) == (2, 5, [[0], [1]], 1)
    # Group 1's trial ended without its group being counted (cancelled while its unit waited to be sent).
    end_trials(sweeps, sweep.id, failed=1, uncounted=(1,))
    fence = lease(sweeps, sweep.id)
    record = sweeps.raw(sweep.id)
    assert pending(record) and next_batch(sweeps, sweep.id, fence)
    after = sweeps.get(sweep.id)
    assert (after.progress.trials, after.progress.planned, after.batches, after.groups) == (
        4,
        5,
        2,
        [[0], [1], [2], [3]],
    )
    history = [(t.values, loss(t.values) if t.trial != 1 else None) for t in after.trials[:2]]
    assert [t.values for t in after.trials[2:]] == search().random.draw(1, history)
    new = after.trials[2:]
    assert [(t.status, t.group) for t in new] == [("queued", 2), ("queued", 3)]
    assert [sweeps.jobs.get(t.job_id).owner for t in new] == ["bob", "bob"]
    queued = [(m.task_id, m.args) for m in Dispatch(sweeps.redis, sweeps.prefix).waiting()]
    assert queued[-2:] == [(f"{sweep.id}-g{g}", [sweep.id, g, [t.job_id]]) for g, t in zip((2, 3), new)]
    assert int(sweeps.redis.hget(sweeps.key(sweep.id), "groups_left")) == 3, "the new groups and group 1"
    # The same batch is not made twice (a finisher that read the record before it was made), and the new groups
    # count down to the sweep's next turn as the first ones did, the late group 1 with them.
    assert add_batch(sweeps, fence, after, record) is False and len(sweeps.raw(sweep.id)["job_ids"]) == 4
    assert sweeps.group_finished(sweep.id, 1) is False and sweeps.group_finished(sweep.id, 2) is False
    assert sweeps.group_finished(sweep.id, 3) is True
    end_trials(sweeps, sweep.id)
    assert next_batch(sweeps, sweep.id, fence) and not pending(sweeps.raw(sweep.id))
    assert sweeps.get(sweep.id).progress.trials == 5


def test_the_same_request_and_scores_make_the_same_trials(sweeps):
    made = []
    for _ in range(2):
        sweep = created(sweeps, search())
        end_trials(sweeps, sweep.id)
        assert next_batch(sweeps, sweep.id, lease(sweeps, sweep.id))
        made.append([t.values for t in sweeps.get(sweep.id).trials])
    assert made[0] == made[1] and len(made[0]) == 4


def test_a_finisher_without_its_lease_or_a_cancelled_sweep_makes_no_batch(sweeps):
    sweep = created(sweeps, search())
    end_trials(sweeps, sweep.id)
    stale = lease(sweeps, sweep.id, "t-1")
    lease(sweeps, sweep.id, "t-2")  # another finisher took over
    with pytest.raises(LeaseLost):
        next_batch(sweeps, sweep.id, stale)
    sweeps.request_cancel(sweep.id)
    assert next_batch(sweeps, sweep.id, Fence("t-2", stale.leases)) is False
    assert len(sweeps.raw(sweep.id)["job_ids"]) == 2 and Dispatch(sweeps.redis, sweeps.prefix).waiting() == []
