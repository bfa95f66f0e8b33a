"""The points of a search space that stand for all of it: a tpe search's later trials are drawn after POST, so its
request is validated at these as well as at its first batch.

The training parameters' constraints that join several fields (a window within the series, the echo within it,
a job's steps and bits) are monotone in each of those fields: when every corner of the box they span is valid,
so is every point inside. The other searched fields are checked one at a time: each range's ends, each choice.
"""

import itertools
import math
from typing import Any

JOINED = ("total_series_length", "truncated_backprop_length", "batch_size", "echo_step", "num_epochs")


def _numbers(values: list[Any]) -> list[int | float]:
    return [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def _ends(dim: Any, integer: bool) -> list[Any]:
    """A range's ends (the integers nearest inside them for an integer field), or a choice's values."""
    if hasattr(dim, "values"):
        return list(dim.values)
    if integer:
        return sorted({math.ceil(dim.low), math.floor(dim.high)})
    return sorted({dim.low, dim.high})


def edges(space: dict[str, Any], int_fields: frozenset[str], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Configurations whose validity stands for every one the space holds: base (a configuration it holds) with
    every corner of its joined fields (at most 2^5), then with each value of each field alone."""
    ends = {name: _ends(dim, name in int_fields) for name, dim in space.items()}
    joined = {n: sorted({min(found), max(found)}) for n, v in ends.items() if n in JOINED and (found := _numbers(v))}
    corners = [{**base, **dict(zip(joined, combo))} for combo in itertools.product(*joined.values())]
    return corners + [{**base, name: value} for name, values in ends.items() for value in values]
