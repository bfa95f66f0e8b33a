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


def _ends(dim: Any, integer: bool, joined: bool) -> list[Any]:
    """A range's ends (integers inside it for an integer field); a choice's values (a joined field's: its least
    and greatest number, and any value not a number)."""
    if hasattr(dim, "values"):
        if not joined:
            return list(dim.values)
        numbers = [v for v in dim.values if isinstance(v, int | float) and not isinstance(v, bool)]
        others = [v for v in dim.values if v not in numbers]
        return [*({min(numbers), max(numbers)} if numbers else ()), *others]
    if integer:
        return sorted({math.ceil(dim.low), math.floor(dim.high)})
    return sorted({dim.low, dim.high})


def edges(space: dict[str, Any], int_fields: frozenset[str], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Configurations whose validity stands for every one the space holds: base (a configuration it holds) with
    every corner of its joined fields, then with each end of each other field alone."""
    joined = {n: _ends(d, n in int_fields, True) for n, d in space.items() if n in JOINED}
    corners = [{**base, **dict(zip(joined, combo))} for combo in itertools.product(*joined.values())]
    alone = [
        {**base, name: value}
        for name, dim in space.items()
        if name not in JOINED
        for value in _ends(dim, name in int_fields, False)
    ]
    return corners + alone
