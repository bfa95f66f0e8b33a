"""Successive halving inside a group: held-out scores at each rung, the best 1/η go on in a smaller program,
the pruned keep their scores; a group resumed from any checkpoint ends as the uninterrupted one."""

import numpy as np
import pytest

from contract.params import TrainingParams
from contract.sweep import Halving
from tests.worker.engine.test_group import TOL, assert_same_run
from worker.engine import group
from worker.engine.evaluate import evaluate
from worker.engine.forward import make_forward
from worker.engine.group import GroupCheckpoint, train_group
from worker.engine.halving import RungReport, program_size
from worker.engine.results import TrainingResult
from worker.engine.train import train_model

# Six models, epochs of 100 steps, rungs after epochs 1 and 2 (η = 2): 6 live → 3 (a program of 4) → 1 (of 1).
BASE = TrainingParams(num_epochs=4, total_series_length=7_500, device="cpu")
HALVING = Halving(type="halving", min_epochs=1, reduction=2)
MODELS = [
    BASE.model_copy(update={"seed": s, "learning_rate": lr, "init": init})
    for s, lr, init in [
        (1, 0.03, "tutorial"),
        (2, 1.0, "glorot"),
        (3, 0.3, "tutorial"),
        (4, 0.05, "glorot"),
        (5, 0.3, "glorot"),
        (6, 0.01, "tutorial"),
    ]
]


@pytest.fixture(scope="module")
def halved() -> tuple[list[TrainingResult], list[RungReport], list[bytes]]:
    """The group trained once with halving: its rung reports and a checkpoint after every window."""
    rungs: list[RungReport] = []
    taken: list[bytes] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(group, "CHUNK_TARGET_S", 0.0)
        results = train_group(
            MODELS,
            halving=HALVING,
            on_rung=rungs.append,
            on_checkpoint=lambda c: taken.append(c.to_bytes()),
            checkpoint_every_s=0,
        )
    return results, rungs, taken


def test_each_rung_keeps_the_best_half_by_held_out_score_and_prunes_the_rest(halved):
    results, rungs, _ = halved
    assert [(r.rung, r.epoch) for r in rungs] == [(1, 1), (2, 2)]
    live = set(range(len(MODELS)))
    for report in rungs:
        scored = {k for k, s in enumerate(report.scores) if s is not None}
        assert scored == live
        ranked = sorted(scored, key=lambda k: (-report.scores[k].echo_accuracy, report.scores[k].loss, k))
        keep = HALVING.survivors(len(ranked))
        assert sorted(report.pruned) == sorted(ranked[keep:])
        live -= set(report.pruned)
    assert [r.pruned for r in results].count(1) == 3 and [r.pruned for r in results].count(2) == 2
    [winner] = live
    assert results[winner].pruned is None and len(results[winner].epoch_losses) == BASE.num_epochs


def test_a_pruned_model_stops_at_its_rung_and_keeps_that_rungs_held_out_scores(halved):
    results, rungs, _ = halved
    for result in results:
        if result.pruned is None:
            continue
        epochs = rungs[result.pruned - 1].epoch
        assert len(result.epoch_losses) == epochs and len(result.losses) == epochs * BASE.steps_per_epoch
        assert [r["rung"] for r in result.rungs] == list(range(1, result.pruned + 1))
        last = result.rungs[-1]
        assert (result.evaluation.echo_accuracy, result.evaluation.loss) == (last["echo_accuracy"], last["loss"])
        # The rung's score is the job's evaluation of the weights it stopped with (one call for the live ones).
        alone = evaluate(make_forward([result.weights[n] for n in ("W", "b", "W2", "b2")]), result.params)
        assert alone.echo_accuracy == pytest.approx(last["echo_accuracy"], abs=1e-3)
        assert alone.loss == pytest.approx(last["loss"], rel=1e-3)


def test_survivors_train_in_a_smaller_program_exactly_as_their_jobs_would(halved):
    results, _, _ = halved
    assert [size for size, _ in results[0].programs] == [6, 4, 1]  # powers of two once pruning starts
    for result, params in zip(results, MODELS):
        alone = train_model(params)
        trained = len(result.losses)
        np.testing.assert_allclose(result.losses, alone.losses[:trained], **TOL)
        np.testing.assert_allclose(result.epoch_losses, alone.epoch_losses[: len(result.epoch_losses)], **TOL)


def test_a_resumed_group_goes_on_with_the_same_survivors_and_ends_the_same(halved):
    results, rungs, taken = halved
    checkpoints = [GroupCheckpoint.from_bytes(b) for b in taken]
    steps = BASE.steps_per_epoch
    winner = next(k for k, r in enumerate(results) if r.pruned is None)
    position = [c.models[winner].step for c in checkpoints]
    chosen = [
        position.index(steps // 2),  # before the first rung: all six in the first program
        position.index(steps),  # right after the first rung (the checkpoint it forces)
        position.index(steps + 37),  # inside an epoch of the repacked program
        position.index(3 * steps + 5),
    ]  # after the last rung: the winner alone
    assert checkpoints[chosen[1]].halving["slots"] == [k for k, r in enumerate(results) if r.pruned != 1] + [None]
    for index in chosen:
        seen: list[RungReport] = []
        again = train_group(MODELS, resume=checkpoints[index], halving=HALVING, on_rung=seen.append)
        for got, want in zip(again, results):
            assert_same_run(got, want)
            assert (got.pruned, got.rungs) == (want.pruned, want.rungs)
        assert [r.rung for r in seen] == [r.rung for r in rungs if r.epoch * steps > position[index]]


def test_the_program_shrinks_to_a_power_of_two_only_when_that_is_smaller():
    assert [program_size(n, 32) for n in (32, 17, 16, 10, 3, 1)] == [32, 32, 16, 16, 4, 1]
    assert program_size(5, 6) == 6 and program_size(3, 6) == 4 and program_size(3, 4) == 4
