"""A random search's draws, with Optuna's samplers and distributions: the same request and seed, the same trials.

Optuna is imported here only, when a random search is drawn: an API process that draws none never loads it.
The study lives in memory. Each trial is told a constant once asked: random and quasi-random draws do not
depend on results, but QMCSampler takes its search space from the first finished trial (until then every
draw is an independent one).
"""

import math
import warnings
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
