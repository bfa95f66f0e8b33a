"""Consoles and small formatters shared by the commands."""

import json
from typing import Any

from rich.console import Console
from rich.text import Text

# Results on stdout, progress and errors on stderr; long values (URLs, bit strings) are never
# wrapped, and piped tables get room for full job ids.
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)
if not out.is_terminal:
    out.width = max(out.width, 200)


def error_line(message: str) -> Text:
    """'error: message', the label in red on a terminal."""
    return Text.assemble(("error:", "bold red"), " ", message)


def dump(data: Any) -> None:
    """Raw JSON on stdout."""
    print(json.dumps(data, indent=2))


def when(stamp: str | None) -> str:
    """An ISO 8601 UTC time as 'YYYY-MM-DD HH:MM:SS'; '-' when absent."""
    return stamp[:19].replace("T", " ") if stamp else "-"


def num(value: float | None, digits: int = 4) -> str:
    """A metric with a few significant digits; '-' when absent."""
    return "-" if value is None else f"{value:.{digits}g}"


def percent(job: dict) -> str:
    """How far a job is, e.g. '42%'."""
    return f"{100 * (job.get('progress') or {}).get('fraction', 0.0):.0f}%"


def evaluation_line(job: dict) -> str:
    """The held-out evaluation of a job, one line ('-' before it has one)."""
    ev = job.get("evaluation")
    if not ev:
        return "-"
    lengths = "  ".join(f"{n} bits {num(v['echo_accuracy'])}" for n, v in ev["by_length"].items())
    return f"echo accuracy {num(ev['echo_accuracy'])}  loss {num(ev['loss'])}  ({lengths})"


def champion_line(job: dict) -> str:
    """Whether the job's model became the champion, and why ('-' before it has a model)."""
    model = job.get("model") or {}
    if model.get("promoted") is None:
        return "-"
    return ("promoted: " if model["promoted"] else "not promoted: ") + (model.get("promotion") or "")
