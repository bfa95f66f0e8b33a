"""echo-rnn predict and models."""

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from service.cli.api import Api, handled
from service.cli.output import dump, err, num, out, when

PREDICT_TIMEOUT_S = 120.0  # the first prediction with a model loads it


def _echo_line(result: dict) -> Text:
    """The echo, its bits in red where they differ from the input echo_step earlier."""
    bits, step, text = result["sequence"], result["echo_step"], Text("echo   ")
    for i, bit in enumerate(result["echo"]):
        text.append(bit, "red" if i >= step and bits[i - step] != bit else "")
    return text


@handled
def predict(
    ctx: typer.Context,
    sequences: Annotated[
        list[str],
        typer.Argument(help="Bit strings such as 0110100111010; several go in one batch.", show_default=False),
    ],
    model: Annotated[
        str | None,
        typer.Option(help="A job id, run id, models:/echo-rnn/N or models:/echo-rnn@ALIAS; default the champion."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the API's JSON as it is.")] = False,
) -> None:
    """Echo bit sequences with a registered model: each input and its echo lined up."""
    api: Api = ctx.obj
    if len(sequences) == 1:
        query = {"sequence": sequences[0], **({"model": model} if model else {})}
        answer = api.call("GET", "/predict", params=query, timeout=PREDICT_TIMEOUT_S)
        results = [answer]
    else:
        answer = api.call("POST", "/predict", json={"sequences": sequences, "model": model}, timeout=PREDICT_TIMEOUT_S)
        results = answer["results"]
    if json:
        return dump(answer)
    m = answer["model"]
    step = results[0]["echo_step"]
    out.print(
        f"model  {m['uri']} (version {m['version']}, job {m.get('job_id') or '-'}), echo_step {step}", markup=False
    )
    for i, result in enumerate(results):
        out.print(("\n" if i else "") + f"input  {result['sequence']}", markup=False)
        out.print(_echo_line(result))


models_app = typer.Typer(name="models", help="The registered model versions.", invoke_without_command=True)


@models_app.callback()
@handled
def models(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Versions per page (1-100).")] = 100,
    cursor: Annotated[
        int | None, typer.Option(help="Where the page starts: the cursor the previous page printed.")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the API's JSON as it is.")] = False,
) -> None:
    """List the registered model versions, newest first, with their job, run and final metrics."""
    if ctx.invoked_subcommand is not None:
        return
    api: Api = ctx.obj
    answer = api.call(
        "GET", "/models", params={"limit": limit, **({"cursor": cursor} if cursor is not None else {})}, timeout=30
    )
    if json:
        return dump(answer)
    table = Table("version", "aliases", "job", "run", "echo_accuracy", "loss", "created (UTC)", box=None)
    for v in answer["models"]:
        table.add_row(
            v["version"],
            ",".join(v["aliases"]) or "-",
            v.get("job_id") or "-",
            v.get("run_id") or "-",
            num(v["metrics"].get("echo_accuracy")),
            num(v["metrics"].get("loss")),
            when(v["created_at"]),
        )
    out.print(table if answer["models"] else "no registered models yet")
    if answer.get("next_cursor") is not None:
        err.print(f"more: echo-rnn models --cursor {answer['next_cursor']} --limit {limit}", markup=False)


@models_app.command()
@handled
def backfill(ctx: typer.Context) -> None:
    """Have a worker add the ONNX graph the API serves to every version registered before workers wrote it (admin)."""
    api: Api = ctx.obj
    answer = api.call("POST", "/models/backfill", timeout=30)
    out.print(f"queued as task {answer['task_id']}: {answer['detail']}", markup=False)
