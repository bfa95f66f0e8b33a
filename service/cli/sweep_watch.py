"""A live table of a sweep's trials, fed by polling GET /sweeps/{id} until the sweep ends."""

import typer
from rich.live import Live

from contract.job import FINISHED
from service.cli import sweep_view
from service.cli.api import CANCELLED, FAILED, INTERRUPTED, Api
from service.cli.follow import CtrlC, ask_in_background
from service.cli.output import err, error_line, out

POLL_S = 1.0


def _watch(api: Api, sweep: dict, ctrl_c: CtrlC) -> dict:
    """Redraw the table every poll until the sweep has finished or Ctrl-C is pressed; the last sweep seen."""
    with Live(sweep_view.live(sweep), console=err, refresh_per_second=4) as table:
        while sweep["status"] not in FINISHED and not ctrl_c.nap(POLL_S):
            answer = ctrl_c.result(ask_in_background(api, f"/sweeps/{sweep['id']}"))
            if answer is None:
                break
            sweep = answer
            table.update(sweep_view.live(sweep))
    return sweep


def report(sweep: dict) -> None:
    """The leaderboard's top and the best trial's model on stdout; a non-zero exit unless the sweep succeeded."""
    out.print(sweep_view.result(sweep))
    if sweep["status"] == "failed":
        err.print(error_line(f"sweep {sweep['id']} failed: {sweep.get('error') or 'no reason given'}"))
        raise typer.Exit(FAILED)
    if sweep["status"] == "cancelled":
        raise typer.Exit(CANCELLED)


def follow(api: Api, sweep: dict) -> None:
    """Show the sweep's trials live until it ends, then report it; Ctrl-C stops watching, not the sweep."""
    with CtrlC() as ctrl_c:
        sweep = _watch(api, sweep, ctrl_c)
        if ctrl_c.pressed:
            hint = f"echo-rnn --api {api.base} sweep cancel {sweep['id']}"
            err.print(f"stopped watching; sweep {sweep['id']} keeps running. To cancel it: {hint}", markup=False)
            raise typer.Exit(INTERRUPTED)
    report(sweep)
