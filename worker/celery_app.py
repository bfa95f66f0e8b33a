"""The Celery application of the workers: long jobs, late acks, one job per child process."""

import os

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun

from worker import logs
from worker.settings import WorkerSettings

settings = WorkerSettings()
# MLflow's client takes its HTTP retries and timeout only from the environment: bound them here,
# before any child process forks, so a stopped tracking server never hangs a call for minutes.
os.environ.update(settings.mlflow_client_environment())

app = Celery("echo_rnn", broker=settings.redis_url, backend=settings.redis_url, include=["worker.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=settings.worker_max_tasks_per_child or None,
    broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
    result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
    result_expires=7 * 24 * 3600,
    task_serializer="json",
    accept_content=["json"],
    worker_send_task_events=True,
    task_send_sent_event=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@setup_logging.connect
def _json_logs(**_) -> None:
    logs.configure(settings.log_level)


@task_prerun.connect
def _job_context(task_id: str, **_) -> None:
    logs.job_id_var.set(task_id)  # a job's task id is its job id


@task_postrun.connect
def _job_context_end(**_) -> None:
    logs.job_id_var.set(None)
