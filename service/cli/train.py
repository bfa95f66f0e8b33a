"""echo-rnn train: submit a training job, and optionally follow it to its end."""

from typing import Annotated

import typer

from contract.params import TrainingParams
from service.cli.api import Api, handled
from service.cli.follow import follow
from service.cli.output import out

# Each option of the command and the training parameter it sets.
OPTIONS = {
    "--epochs": "num_epochs",
    "--series-length": "total_series_length",
    "--window": "truncated_backprop_length",
    "--state-size": "state_size",
    "--num-classes": "num_classes",
    "--echo-step": "echo_step",
    "--batch-size": "batch_size",
    "--learning-rate": "learning_rate",
    "--seed": "seed",
    "--device": "device",
    "--init": "init",
    "--target-loss": "target_loss",
}
LABELS = {field: f"{field} ({option})" for option, field in OPTIONS.items()}


def _help(field: str) -> str:
    info = TrainingParams.model_fields[field]
    default = "drawn by the API" if info.default is None else info.default
    return f"{field}: {info.description} [API default: {default}]"


def _opt(*names: str) -> typer.models.OptionInfo:
    return typer.Option(*names, help=_help(OPTIONS[names[0]]), show_default=False)


@handled
def train(
    ctx: typer.Context,
    epochs: Annotated[int | None, _opt("--epochs")] = None,
    series_length: Annotated[int | None, _opt("--series-length", "--total-series-length")] = None,
    window: Annotated[int | None, _opt("--window", "--truncated-backprop-length")] = None,
    state_size: Annotated[int | None, _opt("--state-size")] = None,
    num_classes: Annotated[int | None, _opt("--num-classes")] = None,
    echo_step: Annotated[int | None, _opt("--echo-step")] = None,
    batch_size: Annotated[int | None, _opt("--batch-size")] = None,
    learning_rate: Annotated[float | None, _opt("--learning-rate")] = None,
    seed: Annotated[int | None, _opt("--seed")] = None,
    device: Annotated[str | None, _opt("--device")] = None,
    init: Annotated[str | None, _opt("--init")] = None,
    target_loss: Annotated[float | None, _opt("--target-loss")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Follow the job with a progress bar until it ends.")
    ] = False,
) -> None:
    """Submit a training job (only the options given are sent); --wait follows it to its end."""
    given = locals()  # each option sets the parameter named after it: --state-size → state_size
    params = {OPTIONS[option]: given[option[2:].replace("-", "_")] for option in OPTIONS}
    params = {k: v for k, v in params.items() if v is not None}
    api: Api = ctx.obj
    job = api.call("POST", "/jobs", json=params, labels=LABELS)
    out.print(job["id"], markup=False)
    if wait:
        follow(api, job)
