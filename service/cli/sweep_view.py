"""How a sweep looks on the terminal: its trials, its progress, its leaderboard."""

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from service.cli.output import num, when

TOP = 5  # leaderboard places shown


def values(searched: dict[str, Any]) -> str:
    """A trial's searched values, 'learning_rate=0.1 seed=2'."""
    return " ".join(f"{k}={num(v) if isinstance(v, float) else v}" for k, v in searched.items())


def summary(sweep: dict) -> str:
    """One line: the sweep's status and overall progress."""
    p = sweep["progress"]
    cancel = " (cancel requested)" if sweep.get("cancel_requested") and sweep["status"] in ("queued", "running") else ""
    name = f" {sweep['name']!r}" if sweep.get("name") else ""
    return (
        f"sweep {sweep['id']}{name}: {sweep['status']}{cancel}  {100 * p['fraction']:.0f}%  "
        f"{p['finished']}/{made(p)} trials finished, {p['succeeded']} succeeded, {groups(sweep)}"
    )


def made(progress: dict) -> str:
    """'4' trials, or '4 of 8 made' while a tpe search has batches left to ask."""
    planned = progress.get("planned") or progress["trials"]
    return str(progress["trials"]) if planned <= progress["trials"] else f"{progress['trials']} (of {planned} planned)"


def groups(sweep: dict) -> str:
    """'1 group', '3 groups'."""
    count = len(sweep["groups"])
    return f"{count} group" + ("" if count == 1 else "s")


def halving(sweep: dict) -> bool:
    """Whether the sweep stops losing trials at rungs (successive halving)."""
    return bool(sweep.get("request", {}).get("scheduler"))


def rung(entry: dict) -> str:
    """A halving trial's last rung, 'pruned at 2' once stopped there; '-' before its first."""
    if entry.get("pruned"):
        return f"pruned at {entry['rung']}"
    return str(entry["rung"]) if entry.get("rung") else "-"


def trials(sweep: dict) -> Table:
    """A row per trial: searched values, status, (halving) rung, progress, loss, held-out echo accuracy and loss."""
    rungs = halving(sweep)
    table = Table(
        "trial",
        "values",
        "status",
        *(["rung"] if rungs else []),
        "progress",
        "loss",
        "held-out echo acc.",
        "held-out loss",
        box=None,
    )
    for t in sweep["trials"]:
        ev = t.get("evaluation") or {}
        table.add_row(
            str(t["trial"]),
            values(t["values"]),
            t["status"],
            *([rung(t)] if rungs else []),
            f"{100 * t['fraction']:.0f}%",
            num(t.get("loss")),
            num(ev.get("echo_accuracy")),
            num(ev.get("loss")),
        )
    return table


def live(sweep: dict) -> Group:
    """What --wait redraws every poll."""
    return Group(summary(sweep), trials(sweep))


def leaderboard(sweep: dict, top: int = TOP) -> Table:
    """The best trials first: (halving) those that went further, then by held-out echo accuracy and loss."""
    rungs = halving(sweep)
    table = Table(
        "rank", "trial", "values", *(["rung"] if rungs else []), "held-out echo acc.", "held-out loss", "job", box=None
    )
    for r in sweep["leaderboard"][:top]:
        table.add_row(
            str(r["rank"]),
            str(r["trial"]),
            values(r["values"]),
            *([rung(r)] if rungs else []),
            num(r["echo_accuracy"]),
            num(r["loss"]),
            r["job_id"],
        )
    return table


def best(sweep: dict) -> str:
    """The best trial and its registered model; '-' before there is one."""
    found = sweep.get("best")
    if not found:
        return "-"
    model = (found.get("model") or {}).get("uri", "no model registered")
    return f"trial {found['trial']} (job {found['job_id']}): {model}"


def result(sweep: dict) -> Group:
    """The summary, the leaderboard's top, the best trial's model, the MLflow parent run and any error."""
    parts: list[RenderableType] = [Text(summary(sweep))]
    if sweep["leaderboard"]:
        parts.append(leaderboard(sweep))
    parts += [Text(f"best        {best(sweep)}"), Text(f"mlflow run  {(sweep.get('mlflow') or {}).get('url', '-')}")]
    if sweep.get("error"):
        parts.append(Text(f"error       {sweep['error']}"))
    return Group(*parts)


def sweeps(page: dict) -> Table:
    """The list of sweeps."""
    table = Table("id", "name", "status", "progress", "trials", "succeeded", "best acc.", "created (UTC)", box=None)
    for s in page["sweeps"]:
        p, top = s["progress"], s.get("leader") or {}
        table.add_row(
            s["id"],
            s.get("name") or "-",
            s["status"],
            f"{100 * p['fraction']:.0f}%",
            f"{p['finished']}/{made(p)}",
            str(p["succeeded"]),
            num(top.get("echo_accuracy")),
            when(s["created_at"]),
        )
    return table
