"""echo-rnn sweep start, show, list and cancel."""

from typing import Annotated

import typer

from service.cli import sweep_args, sweep_view
from service.cli.api import Api, handled
from service.cli.output import dump, err, out
from service.cli.sweep_watch import follow

sweep = typer.Typer(name="sweep", no_args_is_help=True, help="Sweeps: many jobs from a grid or a random search.")
Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON as it is.")]
SweepId = Annotated[str, typer.Argument(help="The sweep's id (echo-rnn sweep list lists them).", show_default=False)]
Wait = Annotated[
    bool, typer.Option("--wait", "-w", help="A live table of the trials until the sweep ends (Ctrl-C stops watching).")
]
Many = list[str] | None


@sweep.command()
@handled
def start(
    ctx: typer.Context,
    param: Annotated[Many, typer.Option("--param", "-p", help="NAME=VALUE every trial shares (repeatable).")] = None,
    grid: Annotated[
        Many,
        typer.Option(
            "--grid", "-g", help="NAME=V1,V2,… : every combination of the --grid values is a trial (repeatable)."
        ),
    ] = None,
    random: Annotated[
        int | None, typer.Option("--random", help="A random search of N trials instead of a grid.", show_default=False)
    ] = None,
    space: Annotated[
        Many, typer.Option("--space", help="With --random: NAME=LOW:HIGH[:log] or NAME=A|B|C (repeatable).")
    ] = None,
    search_seed: Annotated[
        int | None,
        typer.Option("--search-seed", help="Seed of the random search's draws [API default: 0].", show_default=False),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="A label (the MLflow parent run's name).", show_default=False)
    ] = None,
    sampler: Annotated[
        str | None,
        typer.Option(
            "--sampler",
            help="With --random: Optuna's random, qmc (quasi-random) or tpe sampler (batch by batch, each from the "
            "scores of those before) [API default: random].",
            show_default=False,
        ),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option("--batch", help="With --sampler tpe: trials per batch [API default: 8].", show_default=False),
    ] = None,
    halving: Annotated[
        str | None,
        typer.Option(
            "--halving",
            help="MIN_EPOCHS[:REDUCTION]: successive halving, the best 1/REDUCTION (3) of each group's trials going on at MIN_EPOCHS·REDUCTION^k epochs.",
            show_default=False,
        ),
    ] = None,
    wait: Wait = False,
) -> None:
    """Start a sweep (values read as int, float, else text; none is null); prints its id. --wait watches it."""
    request = sweep_args.body(param or [], grid or [], random, space or [], search_seed, name, halving, sampler, batch)
    api: Api = ctx.obj
    started = api.call("POST", "/sweeps", json=request, labels=sweep_args.labels(request))
    out.print(started["id"], markup=False)
    err.print(f"{sweep_view.made(started['progress'])} trials in {sweep_view.groups(started)}, queued", markup=False)
    if wait:
        follow(api, started)


@sweep.command()
@handled
def show(ctx: typer.Context, sweep_id: SweepId, wait: Wait = False, json: Json = False) -> None:
    """Show a sweep: a row per trial, its progress, the leaderboard and the best model."""
    api: Api = ctx.obj
    found = api.call("GET", f"/sweeps/{sweep_id}")
    if json:
        return dump(found)
    if wait:
        return follow(api, found)
    out.print(sweep_view.trials(found))
    out.print(sweep_view.result(found))


@sweep.command("list")
@handled
def list_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Sweeps per page (1-100).")] = 20,
    cursor: Annotated[
        int | None, typer.Option(help="Where the page starts: the cursor the previous page printed.")
    ] = None,
    json: Json = False,
) -> None:
    """List sweeps, newest first, as a table."""
    api: Api = ctx.obj
    page = api.call("GET", "/sweeps", params={"limit": limit, **({"cursor": cursor} if cursor is not None else {})})
    if json:
        return dump(page)
    out.print(sweep_view.sweeps(page) if page["sweeps"] else "no sweeps")
    if page.get("next_cursor") is not None:
        err.print(f"more: echo-rnn sweep list --cursor {page['next_cursor']} --limit {limit}", markup=False)


@sweep.command()
@handled
def cancel(ctx: typer.Context, sweep_id: SweepId) -> None:
    """Cancel a sweep: its queued trials never run, its running ones stop at their next check."""
    api: Api = ctx.obj
    found = api.call("DELETE", f"/sweeps/{sweep_id}")
    if found["status"] == "cancelled":
        out.print(f"sweep {sweep_id}: cancelled", markup=False)
    else:
        out.print(
            f"sweep {sweep_id}: cancel requested; its running trials stop at their next check "
            f"(echo-rnn sweep show {sweep_id})",
            markup=False,
        )
