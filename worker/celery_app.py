"""The Celery application of the workers: long jobs, late acks, one job per child process."""

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init, worker_ready, worker_shutdown

from contract import logs, tasks
from worker.settings import WorkerSettings

settings = WorkerSettings()
_watchdogs: list = []  # the node's watchdog, once it is ready

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


@worker_init.connect
def _bound_mlflow_calls(**_: object) -> None:
    # Before the pool forks: every child's MLflow client then gives up on a stopped server in
    # seconds, where its defaults would hang a call for minutes.
    settings.configure_mlflow_client()


@worker_ready.connect
def _watch_for_lost_jobs(sender: object = None, **_: object) -> None:
    # In the main process: it lives as long as the node, whatever its children do. The node's worker
    # processes (--concurrency) are what it offers the dispatch (contract/dispatch.py).
    from worker.attempt.watchdog import Watchdog
    from worker.tasks import job_store

    processes = int(getattr(getattr(sender, "controller", None), "concurrency", None) or 1)
    watchdog = Watchdog(
        job_store(),
        lambda message: tasks.send(app, message),
        settings.watchdog_interval_s,
        settings.reconcile_after_s,
        processes,
    )
    _watchdogs.append(watchdog.start())


@worker_shutdown.connect
def _stop_watching(**_: object) -> None:
    for watchdog in _watchdogs:
        watchdog.stop()


@setup_logging.connect
def _json_logs(**_: object) -> None:
    logs.configure(settings.log_level)


@task_prerun.connect
def _job_context(task_id: str, **_: object) -> None:
    logs.job_id_var.set(task_id)  # a job's task id is its job id; a group's, the group's name (contract/tasks.py)


@task_postrun.connect
def _job_context_end(**_: object) -> None:
    logs.job_id_var.set(None)
