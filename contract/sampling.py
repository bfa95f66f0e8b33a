"""A random search's draws, with Optuna's samplers and distributions: the same request and seed, the same trials.

Optuna is imported here only, when a random search is drawn: an API process that draws none never loads it.
The study lives in memory. Each trial is told a constant once asked: random and quasi-random draws do not
depend on results, but QMCSampler takes its search space from the first finished trial (until then every
draw is an independent one).

TPE learns from scores, so a tpe search is drawn a batch at a time (tpe_batch): no study is kept between
batches; each batch's is rebuilt from the search's seed, the batch's number and every earlier trial's values
and score, so the same request and the same scores ask the same trials, wherever and however often asked.
"""

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler


def distribution(name: str, dim: Any, integer: bool) -> "BaseDistribution":
    """The Optuna distribution of a Range (float or int, log or not) or a Choice."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if hasattr(dim, "values"):
        return CategoricalDistribution(dim.values)
    if integer:
        return IntDistribution(math.ceil(dim.low), math.floor(dim.high), log=dim.log)
    return FloatDistribution(dim.low, dim.high, log=dim.log)


def sampler(kind: str, seed: int) -> "BaseSampler":
    """Optuna's sampler for "random" (independent uniform draws) or "qmc" (a scrambled Sobol sequence)."""
    import optuna

    if kind == "qmc":
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def draw(space: dict[str, Any], trials: int, seed: int, kind: str, int_fields: frozenset[str]) -> list[dict[str, Any]]:
    """trials configurations of space, in order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per study and trial in the API's log
    dists = {name: distribution(name, dim, name in int_fields) for name, dim in space.items()}
    with warnings.catch_warnings():  # QMC is "experimental" and samples categories independently: said in the docs
        warnings.simplefilter("ignore")
        study = optuna.create_study(sampler=sampler(kind, seed), direction="maximize")
        drawn = []
        for _ in range(trials):
            trial = study.ask(dists)
            drawn.append(trial.params)
            study.tell(trial, 0.0)
        return drawn


def tpe_batch(
    space: dict[str, Any],
    int_fields: frozenset[str],
    seed: int,
    batch: int,
    size: int,
    history: Sequence[tuple[dict[str, Any], float | None]],
    startup: int,
) -> list[dict[str, Any]]:
    """The size configurations of a tpe search's batch number batch, from every earlier trial's values and score
    (held-out loss, lower is better; None for a trial that did not succeed, told failed).

    The sampler's seed is the search's and the batch's together: a batch asked again (another worker, after
    a lost one) is the same. Until startup trials are scored TPE draws independently (its random start);
    within a batch each trial asked counts as a bad score for the next (constant liar), so they spread out.
    """
    import numpy as np
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {name: distribution(name, dim, name in int_fields) for name, dim in space.items()}
    batch_seed = int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])
    with warnings.catch_warnings():  # constant_liar is "experimental": said in the docs
        warnings.simplefilter("ignore")
        made = optuna.samplers.TPESampler(seed=batch_seed, n_startup_trials=startup, constant_liar=True)
        study = optuna.create_study(sampler=made, direction="minimize")
        for values, score in history:
            state = TrialState.COMPLETE if score is not None else TrialState.FAIL
            study.add_trial(create_trial(params=values, distributions=dists, value=score, state=state))
        return [study.ask(dists).params for _ in range(size)]
