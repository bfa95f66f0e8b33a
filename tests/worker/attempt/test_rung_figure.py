"""The parent run's figure of a halving sweep: each trial's points, a pruned one's ending at the rung that stopped it."""

from contract.job import Evaluation, RungScore
from contract.sweep_record import Trial
from worker.attempt.rung_figure import points, rung_figure


def trial(n: int, rungs: list[float], epoch: int, final: float | None, pruned: bool = False) -> Trial:
    return Trial(
        trial=n,
        job_id=f"job-{n}",
        group=0,
        values={},
        status="succeeded",
        epoch=epoch,
        evaluation=Evaluation(echo_accuracy=final, loss=1 - final) if final is not None else None,
        rung=len(rungs),
        pruned=pruned,
        rungs=[RungScore(rung=r + 1, epoch=2 ** (r + 1), echo_accuracy=a, loss=1 - a) for r, a in enumerate(rungs)],
    )


def test_a_pruned_trial_ends_at_its_last_rung_and_a_survivor_adds_its_final_evaluation():
    assert points(trial(0, [0.6], epoch=2, final=0.6, pruned=True)) == ([2], [0.6])
    assert points(trial(1, [0.7, 0.8], epoch=8, final=0.95)) == ([2, 4, 8], [0.7, 0.8, 0.95])
    assert points(trial(2, [0.7, 0.9], epoch=4, final=0.9)) == ([2, 4], [0.7, 0.9]), "its last rung was its end"
    assert points(trial(3, [], epoch=0, final=None)) == ([], [])


def test_the_figure_is_a_png_with_or_without_highlighted_trials():
    trials = [trial(0, [0.6], 2, 0.6, pruned=True), trial(1, [0.7, 0.8], 8, 0.95), trial(2, [], 0, None)]
    for highlighted in ([1, 0], []):
        assert rung_figure(trials, highlighted).startswith(b"\x89PNG")
