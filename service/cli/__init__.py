"""echo-rnn: the command line of the echo-rnn service (the console script is this `app`)."""

from typing import Annotated

import typer

from service.cli.api import Api
from service.cli.job_commands import cancel, jobs, show
from service.cli.model_commands import models_app, predict
from service.cli.sweep_commands import sweep
from service.cli.train import train

DEFAULT_API = "http://127.0.0.1:8000"

app = typer.Typer(
    name="echo-rnn",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # an unexpected traceback must never show the token
)


def _url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return value


@app.callback()
def main(
    ctx: typer.Context,
    api: Annotated[str, typer.Option(envvar="ECHO_RNN_API", callback=_url, help="Base URL of the API.")] = DEFAULT_API,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="ECHO_RNN_TOKEN", show_default=False, help="API token, sent as 'Authorization: Bearer ...'."
        ),
    ] = None,
) -> None:
    """Train, follow and use echo RNN models through the echo-rnn API.

    Exit codes:
    0 success;
    1 the API refused the request (its error and each bad field are printed) or the job (sweep) failed;
    2 bad usage;
    3 the API cannot be reached;
    4 the job (sweep) was cancelled (train --wait, sweep start --wait);
    130 Ctrl-C while following a job or sweep (it keeps running).
    """
    ctx.obj = Api(api, token)


for command in (train, jobs, show, cancel, predict):
    app.command()(command)
app.add_typer(models_app)
app.add_typer(sweep)
