"""The halving comparison's engine side, in one process: our groups with halving (repacked, or masked only)
and Optuna's study with its SuccessiveHalvingPruner running the same trials one by one through the engine.

Run by bench/sweep_speed.py in a process of its own (it imports TensorFlow); prints one JSON line.
"""

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from contract.sweep import SweepRequest, group  # noqa: E402
from contract.sweep_record import rank_key  # noqa: E402


def ours(request: SweepRequest, masked: bool = False, full: bool = False) -> dict:
    """The sweep's groups trained one after another with halving (masked: pruned trials stay in the program;
    full: without halving)."""
    from worker.engine import group as engine_group
    from worker.engine.group import train_group

    trials = request.trials()
    keep = engine_group.program_size
    if masked:
        engine_group.program_size = lambda live, current: current
    results: list = []
    programs: list = []
    t0 = time.perf_counter()
    try:
        for members in group(trials, 32):
            trained = train_group([trials[i] for i in members], halving=None if full else request.scheduler)
            results += zip(members, trained)
            programs.append(trained[0].programs)
    finally:
        engine_group.program_size = keep
    seconds = time.perf_counter() - t0
    best = min(
        results, key=lambda ir: rank_key(ir[1].pruned, ir[1].evaluation.echo_accuracy, ir[1].evaluation.loss, ir[0])
    )
    pruned: dict[int, int] = {}
    for _, r in results:
        if r.pruned is not None:
            pruned[r.pruned] = pruned.get(r.pruned, 0) + 1
    return {"seconds": seconds, "best": best[1].evaluation.echo_accuracy, "pruned": pruned, "programs": programs}


def optuna_pruned(request: SweepRequest) -> dict:
    """Optuna's study: the same configurations enqueued, each trained alone through the engine, reporting each
    epoch's echo accuracy; SuccessiveHalvingPruner(min_resource=r, reduction_factor=η) stops it at a rung."""
    import optuna

    from contract.params import TrainingParams
    from worker.engine.results import TrainingCancelled
    from worker.engine.train import train_model

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    halving = request.scheduler
    assert halving is not None and request.random is not None, "the benchmark's search halves a random search"
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.SuccessiveHalvingPruner(
            min_resource=halving.min_epochs, reduction_factor=halving.reduction
        ),
    )
    configurations = request.configurations()
    for configuration in configurations:
        study.enqueue_trial(configuration)
    space = request.random.space
    seeds = [t.seed for t in request.trials()]

    def objective(trial: optuna.Trial) -> float:
        chosen = {}
        for name, dim in space.items():
            if hasattr(dim, "values"):
                chosen[name] = trial.suggest_categorical(name, dim.values)
            else:
                chosen[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log)
        params = TrainingParams.model_validate({**request.params, **chosen, "seed": seeds[trial.number]})
        stop: list[int] = []

        def progress(report) -> None:
            if report.epoch_done:
                trial.report(report.echo_accuracy, report.epoch)
                if trial.should_prune():
                    stop.append(report.epoch)

        try:
            return train_model(params, on_progress=progress, should_stop=lambda: bool(stop)).evaluated().echo_accuracy
        except TrainingCancelled:
            raise optuna.TrialPruned() from None

    t0 = time.perf_counter()
    study.optimize(objective, n_trials=len(configurations))
    seconds = time.perf_counter() - t0
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return {"seconds": seconds, "best": study.best_value, "pruned": pruned}


def main() -> int:
    """argv: the timed request and a warm-up request (JSON); prints each side's figures as one JSON line."""
    timed, warm = (SweepRequest.model_validate_json(a) for a in sys.argv[1:3])
    cold = ours(warm)  # every program compiled before timing
    optuna_pruned(warm), ours(warm, masked=True), ours(warm, full=True)
    out = {
        "cold": cold,
        "ours": ours(timed),
        "masked": ours(timed, masked=True),
        "full": ours(timed, full=True),
        "optuna": optuna_pruned(timed),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
