"""One JSON object per log line, with the job id on every line about a job (no TensorFlow, no Celery)."""

import contextvars
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)

FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s %(job_id)s"
RENAME = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}


class JobIdFilter(logging.Filter):
    """Stamp each record with the job it is about, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            job_id = job_id_var.get()
        if job_id is None and isinstance(record.args, dict):
            job_id = record.args.get("id")  # Celery's task lines: the task id is the job id
        record.job_id = job_id
        return True


def formatter() -> logging.Formatter:
    """The JSON formatter of every process."""
    return JsonFormatter(FORMAT, rename_fields=RENAME)


def configure(level: str = "INFO") -> None:
    """Send the root logger's records to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    handler.addFilter(JobIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
