"""Training jobs: submit, follow, list, cancel."""

from flask import Blueprint, Response, jsonify, url_for
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from service.problems import Problem
from service.routes import json_body, parse, query_args, services
from service.schemas import JobListQuery
from worker.jobs import FINISHED, TASK_NAME, Job, now
from worker.params import TrainingParams

bp = Blueprint("jobs", __name__)


def _job(job: Job) -> dict:
    return job.model_dump(mode="json")


def _get(job_id: str) -> Job:
    job = services().jobs.get(job_id)
    if job is None:
        raise Problem(404, "Not Found", f"no job {job_id}")
    return job


@bp.post("/jobs")
def submit() -> Response:
    """Queue a training job; the body holds training parameters, all optional."""
    params = parse(TrainingParams, json_body(), "body").resolved()
    s = services()
    try:
        job = s.jobs.create(params.model_dump(), params.total_steps)
    except RedisError as exc:
        raise Problem(503, "Service Unavailable", "the job store (Redis) is not answering") from exc
    try:
        s.celery.send_task(TASK_NAME, args=[job.id, params.model_dump()], task_id=job.id)
    except (OperationalError, RedisError) as exc:
        s.jobs.transition(job.id, {"queued"}, status="failed", finished_at=now(), error="the queue was unavailable")
        raise Problem(503, "Service Unavailable", "the queue (Redis) is not answering; the job was not queued") from exc
    resp = jsonify(_job(job))
    resp.status_code = 202
    resp.headers["Location"] = url_for("jobs.show", job_id=job.id)
    return resp


@bp.get("/jobs/<job_id>")
def show(job_id: str) -> Response:
    """One job: status, progress, metrics, MLflow run and model."""
    return jsonify(_job(_get(job_id)))


@bp.get("/jobs")
def index() -> Response:
    """Jobs, newest first; ?status=, ?limit= and ?cursor= for the next page."""
    query = parse(JobListQuery, query_args(), "query")
    jobs, cursor = services().jobs.list(query.status, query.limit, query.cursor)
    return jsonify(jobs=[_job(j) for j in jobs], next_cursor=cursor)


@bp.delete("/jobs/<job_id>")
def cancel(job_id: str) -> Response:
    """Cancel a queued job (it never runs) or ask a running one to stop at its next check."""
    s = services()
    job = _get(job_id)
    if job.status == "queued" and s.jobs.transition(job_id, {"queued"}, status="cancelled", finished_at=now()):
        return jsonify(_job(_get(job_id)))
    if s.jobs.request_cancel(job_id):
        resp = jsonify(_job(_get(job_id)))
        resp.status_code = 202
        return resp
    job = _get(job_id)
    if job.status in FINISHED:
        raise Problem(409, "Conflict", f"job {job_id} has already {job.status}")
    raise Problem(409, "Conflict", f"job {job_id} is {job.status}; try again")
