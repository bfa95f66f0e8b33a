"""echo-rnn sweep start's options turned into the body of POST /sweeps."""

import math
from typing import Any

import typer

Value = int | float | str | None
NULLS = ("none", "null")


def value(text: str) -> Value:
    """An int, else a float, else the text itself; 'none' is null."""
    text = text.strip()
    if text.lower() in NULLS:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text  # JSON has no nan or inf: the API names the field


def pairs(items: list[str], option: str) -> dict[str, str]:
    """NAME=TEXT items by name; each name once."""
    found: dict[str, str] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=option)
        if name in found:
            raise typer.BadParameter(f"{name} is given twice", param_hint=option)
        found[name] = rest
    return found


def dimension(text: str, option: str = "--space") -> dict[str, Any]:
    """A range 'LOW:HIGH' or 'LOW:HIGH:log', or a choice 'A|B|C' (one value: a choice of one)."""
    parts = text.split(":")
    if "|" in text or len(parts) == 1:
        return {"values": [value(v) for v in text.split("|")]}
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].strip() != "log"):
        raise typer.BadParameter(f"{text!r} is neither LOW:HIGH[:log] nor A|B|C", param_hint=option)
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise typer.BadParameter(f"{text!r}: LOW and HIGH must be numbers", param_hint=option) from None
    return {"low": low, "high": high, "log": len(parts) == 3}


def scheduler(text: str) -> dict[str, Any]:
    """--halving 'MIN_EPOCHS' or 'MIN_EPOCHS:REDUCTION' as the request's halving scheduler."""
    parts = [value(p) for p in text.split(":")]
    if len(parts) > 2 or not all(isinstance(p, int) for p in parts):
        raise typer.BadParameter(f"{text!r} is not MIN_EPOCHS[:REDUCTION] (integers)", param_hint="--halving")
    return {"type": "halving", "min_epochs": parts[0], **({"reduction": parts[1]} if len(parts) == 2 else {})}


def body(
    params: list[str],
    grid: list[str],
    trials: int | None,
    space: list[str],
    seed: int | None,
    name: str | None,
    halving: str | None = None,
    sampler: str | None = None,
    batch: int | None = None,
) -> dict[str, Any]:
    """The request: --param values every trial shares, a grid or a random search, and (--halving) a scheduler."""
    if bool(grid) == (trials is not None):
        raise typer.BadParameter("give either --grid (one or more) or --random N with --space", param_hint="--grid")
    if (trials is None) and (space or seed is not None or sampler is not None or batch is not None):
        raise typer.BadParameter(
            "--space, --search-seed, --sampler and --batch go with --random N", param_hint="--space"
        )
    request: dict[str, Any] = {"params": {k: value(v) for k, v in pairs(params, "--param").items()}}
    if name is not None:
        request["name"] = name
    if grid:
        request["grid"] = {k: [value(v) for v in text.split(",")] for k, text in pairs(grid, "--grid").items()}
    else:
        searched = {k: dimension(text) for k, text in pairs(space, "--space").items()}
        request["random"] = {
            "trials": trials,
            "space": searched,
            **({"seed": seed} if seed is not None else {}),
            **({"sampler": sampler} if sampler is not None else {}),
            **({"batch": batch} if batch is not None else {}),
        }
    if halving is not None:
        request["scheduler"] = scheduler(halving)
    return request


def labels(request: dict[str, Any]) -> dict[str, str]:
    """The API's field names with the option that sets them, for its 422s."""
    out = {
        "name": "name (--name)",
        "grid": "grid (--grid)",
        "random.trials": "random.trials (--random)",
        "random.seed": "random.seed (--search-seed)",
        "random.space": "random.space (--space)",
        "random.sampler": "random.sampler (--sampler)",
        "random.batch": "random.batch (--batch)",
        "scheduler.min_epochs": "scheduler.min_epochs (--halving)",
        "scheduler.reduction": "scheduler.reduction (--halving)",
    }
    out |= {f"params.{k}": f"params.{k} (--param {k}=…)" for k in request.get("params", {})}
    out |= {f"grid.{k}": f"grid.{k} (--grid {k}=…)" for k in request.get("grid") or {}}
    out |= {
        f"random.space.{k}": f"random.space.{k} (--space {k}=…)" for k in (request.get("random") or {}).get("space", {})
    }
    return out
