"""The sweep request: grids and random searches expand to valid trials, packed into groups of one shape."""

import math

import pytest
from pydantic import ValidationError

from contract.params import TrainingParams
from contract.sweep import MAX_TRIALS, SweepRequest, group


def error_of(body: dict) -> dict:
    with pytest.raises(ValidationError) as caught:
        SweepRequest.model_validate(body)
    [error] = caught.value.errors()
    return {"field": error["ctx"]["field"], "message": error["msg"]}


def test_a_grid_is_every_combination_in_order_over_the_base_params():
    request = SweepRequest.model_validate(
        {"params": {"num_epochs": 5}, "grid": {"seed": [0, 1], "learning_rate": [0.1, 0.3]}}
    )
    assert request.configurations() == [
        {"seed": 0, "learning_rate": 0.1},
        {"seed": 0, "learning_rate": 0.3},
        {"seed": 1, "learning_rate": 0.1},
        {"seed": 1, "learning_rate": 0.3},
    ]
    trials = request.trials()
    assert trials[3] == TrainingParams(num_epochs=5, seed=1, learning_rate=0.3)


def test_a_random_search_is_the_same_for_the_same_seed_and_draws_within_its_ranges():
    body = {
        "random": {
            "trials": 20,
            "seed": 7,
            "space": {
                "learning_rate": {"low": 0.01, "high": 1.0, "log": True},
                "state_size": {"low": 2, "high": 8},
                "init": {"values": ["tutorial", "glorot"]},
            },
        }
    }
    first, again = (
        SweepRequest.model_validate(body).configurations(),
        SweepRequest.model_validate(body).configurations(),
    )
    assert first == again and len(first) == 20
    assert all(
        0.01 <= c["learning_rate"] <= 1.0 and isinstance(c["state_size"], int) and 2 <= c["state_size"] <= 8
        for c in first
    )
    assert {c["init"] for c in first} == {"tutorial", "glorot"}
    other = SweepRequest.model_validate({**body, "random": {**body["random"], "seed": 8}}).configurations()
    assert other != first


def test_trials_without_a_seed_get_one_each():
    trials = SweepRequest.model_validate({"grid": {"learning_rate": [0.1, 0.2]}}).trials()
    assert all(t.seed is not None for t in trials)


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({}, "grid", "either grid or random"),
        ({"grid": {"seed": [1]}, "random": {"trials": 1, "space": {"seed": {"values": [1]}}}}, "grid", "either"),
        ({"grid": {"device": ["cpu"]}}, "grid.device", "cannot be searched"),
        ({"grid": {"colour": ["red"]}}, "grid.colour", "cannot be searched"),
        ({"params": {"seed": 1}, "grid": {"seed": [2]}}, "grid.seed", "both in params and searched"),
        ({"grid": {"state_size": [4, 0]}}, "grid.state_size", "trial 1 (state_size=0)"),
        (
            {"params": {"total_series_length": 50}, "grid": {"batch_size": [5]}},
            "params.total_series_length",
            "too short",
        ),
        ({"grid": {"seed": list(range(MAX_TRIALS + 1))}}, "grid", f"1 to {MAX_TRIALS}"),
        ({"grid": {"seed": []}}, "grid", "makes 0 trials"),
        ({"random": {"trials": 2, "space": {"init": {"low": 1, "high": 2}}}}, "random.space.init", "trial 0"),
        (
            {"random": {"trials": 2, "space": {"learning_rate": {"low": 0, "high": 1, "log": True}}}},
            "random.space.learning_rate",
            "log range",
        ),
        (
            {"random": {"trials": 2, "space": {"state_size": {"low": 8, "high": 2}}}},
            "random.space.state_size",
            "below low",
        ),
    ],
)
def test_bad_requests_name_the_field_to_change(body, field, words):
    error = error_of(body)
    assert error["field"] == field and words in error["message"], error


def test_groups_hold_one_shape_each_and_at_most_size_trials_in_trial_order():
    request = SweepRequest.model_validate({"grid": {"state_size": [4, 8], "seed": [0, 1, 2]}})
    assert group(request.trials(), 32) == [[0, 1, 2], [3, 4, 5]]
    assert group(request.trials(), 2) == [[0, 1], [2], [3, 4], [5]]
    same_shape = SweepRequest.model_validate({"grid": {"learning_rate": [0.1, 0.2], "echo_step": [1, 3]}})
    assert group(same_shape.trials(), 32) == [[0, 1, 2, 3]], "learning rate and echo step do not change shapes"


HALVING_BODY = {
    "params": {"num_epochs": 20},
    "grid": {"seed": [0, 1]},
    "scheduler": {"type": "halving", "min_epochs": 2, "reduction": 3},
}


def test_a_halving_scheduler_has_rungs_below_the_last_epoch_and_keeps_the_best_third():
    halving = SweepRequest.model_validate(HALVING_BODY).scheduler
    assert halving.rungs(20) == [2, 6, 18] and halving.rungs(18) == [2, 6] and halving.rungs(2) == []
    assert [halving.survivors(n) for n in (32, 10, 3, 2, 1)] == [10, 3, 1, 1, 1]
    assert (
        SweepRequest.model_validate(
            {**HALVING_BODY, "scheduler": {"type": "halving", "min_epochs": 1}}
        ).scheduler.reduction
        == 3
    )


@pytest.mark.parametrize(
    "scheduler, field",
    [
        ({"type": "halving", "min_epochs": 20}, "scheduler.min_epochs"),  # no rung below num_epochs
        ({"type": "halving", "min_epochs": 0}, "scheduler.min_epochs"),
        ({"type": "halving", "min_epochs": 2, "reduction": 1}, "scheduler.reduction"),
        ({"type": "asha", "min_epochs": 2}, "scheduler.type"),
        ({"type": "halving"}, "scheduler.min_epochs"),
        ({"type": "halving", "min_epochs": 2, "eta": 3}, "scheduler.eta"),
    ],
)
def test_a_bad_scheduler_names_its_field(scheduler, field):
    with pytest.raises(ValidationError) as caught:
        SweepRequest.model_validate({**HALVING_BODY, "scheduler": scheduler})
    error = caught.value.errors()[0]
    assert ((error.get("ctx") or {}).get("field") or ".".join(map(str, error["loc"]))) == field


SPACE = {
    "learning_rate": {"low": 0.01, "high": 1.0, "log": True},
    "state_size": {"low": 2, "high": 8},
    "init": {"values": ["tutorial", "glorot"]},
}


@pytest.mark.parametrize("sampler", ["random", "qmc"])
def test_optunas_samplers_draw_the_same_trials_from_the_same_request(sampler):
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    body = {"random": {"trials": 16, "seed": 5, "sampler": sampler, "space": SPACE}}
    first = SweepRequest.model_validate(body).configurations()
    assert first == SweepRequest.model_validate(body).configurations() and len(first) == 16
    made = (
        optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=5)
        if sampler == "qmc"
        else optuna.samplers.RandomSampler(seed=5)
    )
    study = optuna.create_study(sampler=made)
    dists = {
        "learning_rate": FloatDistribution(0.01, 1.0, log=True),
        "state_size": IntDistribution(2, 8),
        "init": CategoricalDistribution(["tutorial", "glorot"]),
    }
    asked = []
    for _ in range(16):
        trial = study.ask(dists)
        asked.append(trial.params)
        study.tell(trial, 0.0)
    assert first == asked  # Optuna's own draws, in order
    assert all(isinstance(c["state_size"], int) for c in first)
    other = SweepRequest.model_validate({"random": {**body["random"], "seed": 6}}).configurations()
    assert other != first


def test_quasi_random_draws_cover_a_range_evenly():
    body = {
        "random": {
            "trials": 9,
            "seed": 1,
            "sampler": "qmc",
            "space": {"learning_rate": {"low": 0.01, "high": 1.0, "log": True}},
        }
    }
    drawn = [c["learning_rate"] for c in SweepRequest.model_validate(body).configurations()]
    # Optuna's QMCSampler draws the first trial independently, then a Sobol sequence, whose first 2^k points
    # fall one in each of 2^k equal parts (in log space here).
    octiles = sorted(int(8 * math.log(v / 0.01) / math.log(100)) for v in drawn[1:])
    assert octiles == list(range(8))


@pytest.mark.parametrize(
    "random, field",
    [
        ({"trials": 2, "sampler": "cmaes", "space": SPACE}, "random.sampler"),
        ({"trials": 2, "batch": 1, "space": SPACE}, "random.batch"),
        ({"trials": 2, "space": {"state_size": {"low": 4.2, "high": 4.8}}}, "random.space.state_size"),
    ],
)
def test_a_bad_random_search_names_its_field(random, field):
    with pytest.raises(ValidationError) as caught:
        SweepRequest.model_validate({"random": random})
    error = caught.value.errors()[0]
    assert ((error.get("ctx") or {}).get("field") or ".".join(map(str, error["loc"]))) == field
