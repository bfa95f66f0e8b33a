"""Held-out evaluation, the Glorot initialisation and stopping once a target loss is reached."""

import numpy as np

from contract.params import TrainingParams
from worker.engine.evaluate import LENGTHS, evaluate
from worker.engine.forward import make_forward
from worker.engine.model import initial_weights
from worker.engine.train import train_model


def test_a_trained_network_scores_near_one_and_an_untrained_one_near_a_coin(trained):
    assert trained.evaluation.echo_accuracy >= 0.99 and trained.evaluation.loss < 0.05
    assert set(trained.evaluation.by_length) == {str(n) for n in LENGTHS}
    untrained = make_forward(
        [np.asarray(v) for v in initial_weights(np.random.default_rng(0), trained.params).values()]
    )
    chance = evaluate(untrained, trained.params)
    assert 0.4 < chance.echo_accuracy < 0.6 and chance.loss > 0.5


def test_evaluation_is_held_out_and_repeatable(trained):
    again = evaluate(make_forward([np.asarray(trained.weights[n]) for n in ("W", "b", "W2", "b2")]), trained.params)
    assert again == trained.evaluation  # its own generator: the same sequences every time, none of training's


def test_glorot_weights_are_zero_centred_and_bounded():
    weights = initial_weights(np.random.default_rng(0), TrainingParams(init="glorot", state_size=16))
    limit = np.sqrt(6 / (17 + 16))
    assert np.abs(weights["W"]).max() <= limit and weights["W"].min() < 0 < weights["W"].max()
    assert abs(float(weights["W"].mean())) < limit / 4


def test_a_target_loss_stops_the_run_at_the_epoch_that_reaches_it():
    params = TrainingParams(num_epochs=10, seed=3, init="glorot", target_loss=0.002)
    result = train_model(params)
    assert result.stopped_early == len(result.epoch_losses) < 10
    assert result.epoch_losses[-1] <= 0.002 and all(loss > 0.002 for loss in result.epoch_losses[:-1])
    assert len(result.losses) == result.stopped_early * params.steps_per_epoch
