"""Training jobs: submit, follow, list, cancel."""

import logging

from flask import Blueprint, Response, jsonify, url_for
from redis.exceptions import RedisError

from contract import tasks
from contract.clock import now
from contract.job import FINISHED, Job
from contract.job_store import QuotaExceeded
from contract.params import TrainingParams
from service import auth, idempotency, limits, queueing, record_budget
from service.endpoints import Answer, Endpoint, route
from service.problems import Problem, redis_down
from service.routes import json_body, parse, query_args, services
from service.schemas import JobList, JobListQuery

bp = Blueprint("jobs", __name__)
log = logging.getLogger(__name__)
LOCATION = {"Location": {"schema": {"type": "string"}, "description": "The job's URL"}}
SUBMIT = Endpoint(
    "post",
    "/jobs",
    body=TrainingParams,
    access="jobs",
    rate_limit="jobs",
    answers=(
        Answer(202, Job, "Accepted: the job is queued", LOCATION),
        idempotency.replay_answer(Job, "job", LOCATION),
    ),
    errors=(400, 409, 413, 415, 422, 429, 503),
    headers=(idempotency.PARAMETER,),
    error_notes={
        429: "Over this client's rate limit, over its MAX_RECORDS_PER_HOUR (jobs and sweep trials made in the last "
        "hour, deleted ones too), or (with tokens) the token already has MAX_ACTIVE_JOBS_PER_TOKEN jobs queued or "
        "running; retry after Retry-After seconds",
        409: idempotency.CONFLICT,
        422: f"Invalid parameters (errors names each field), {idempotency.REUSED}",
    },
)


def _job(job: Job) -> dict:
    return job.model_dump(mode="json")


def _get(job_id: str) -> Job:
    job = services().jobs.get(job_id)
    if job is None or not auth.can_see(job.owner):  # another client's job is not there for this one
        raise Problem(404, "Not Found", f"no job {job_id}")
    return job


@route(bp, SUBMIT)
def submit() -> Response:
    """Queue a training job; the body holds training parameters, all optional."""
    key = idempotency.header_key()
    validated = parse(TrainingParams, json_body(), "body")
    s = services()
    claim = reservation = None
    try:
        if key is not None:
            claim = _claim(key, idempotency.fingerprint(validated.model_dump()))
            if claim.made_id is not None:
                return _replay(claim.made_id)
        params = validated.resolved()
        owner = auth.client_id() if s.settings.tokens_on else None
        quota = s.settings.max_active_jobs_per_token if owner else 0
        reservation = s.records.reserve(limits.client_key(), 1)
        job = s.jobs.create(params.model_dump(), params.total_steps, owner=owner, quota=quota)
    except (QuotaExceeded, RedisError, Problem) as exc:  # nothing was written: the key and the record go back
        _release(claim)
        record_budget.give_back_quietly(s.records, reservation)
        if isinstance(exc, QuotaExceeded):
            raise Problem(
                429,
                "Too Many Requests",
                f"this token already has {quota} jobs queued or running (MAX_ACTIVE_JOBS_PER_TOKEN); "
                "submit more once some have finished",
                headers={"Retry-After": "30"},
            ) from exc
        if isinstance(exc, RedisError):
            raise redis_down() from exc
        raise
    try:
        queueing.queue(s, owner, [(tasks.train_job(job.id, params.model_dump()), [job.id])])
    except RedisError as exc:
        s.jobs.move(job.id, "failed", only_from={"queued"}, finished_at=now(), error=queueing.QUEUE_DOWN)
        if claim is not None:
            _release(claim)  # a retry with the same key makes a new job, rather than replaying this failure
        raise redis_down("the job was not queued") from exc
    if claim is not None:
        try:
            s.idempotency.complete(claim, job.id)
        except RedisError:  # the job is queued all the same; its key's reservation lapses unrecorded
            log.warning("job %s: its Idempotency-Key could not be recorded", job.id)
    resp = jsonify(_job(job))
    resp.status_code = 202
    resp.headers["Location"] = url_for("jobs.show", job_id=job.id)
    return resp


def _claim(key: str, fingerprint: str) -> idempotency.KeyClaim:
    """Reserve key for a new job, or the claim of the job it already made (if that job still exists)."""
    s = services()
    return idempotency.claim_for(
        s.idempotency, auth.client_id() or "anonymous", key, fingerprint, lambda job_id: s.jobs.get(job_id) is not None
    )


def _replay(job_id: str) -> Response:
    """The job an earlier request with the same Idempotency-Key made, as it is now."""
    resp = jsonify(_job(_get(job_id)))
    resp.headers["Location"] = url_for("jobs.show", job_id=job_id)
    resp.headers[idempotency.REPLAYED] = "true"
    return resp


def _release(claim: idempotency.KeyClaim | None) -> None:
    idempotency.release_quietly(services().idempotency, claim)


@route(bp, Endpoint("get", "/jobs/<job_id>", (Answer(200, Job),), (404, 503), access="jobs"))
def show(job_id: str) -> Response:
    """One job: status, progress, metrics, MLflow run and model."""
    return jsonify(_job(_get(job_id)))


@route(bp, Endpoint("get", "/jobs", (Answer(200, JobList),), (400, 422, 503), query=JobListQuery, access="jobs"))
def index() -> Response:
    """Jobs, newest first (a token's own; every job for an admin token); ?status=, ?limit=, ?cursor=."""
    query = parse(JobListQuery, query_args(), "query")
    owner = None if auth.sees_everything() else auth.client_id()
    jobs, cursor = services().jobs.list(query.status, query.limit, query.cursor, owner=owner)
    return jsonify(jobs=[_job(j) for j in jobs], next_cursor=cursor)


@route(
    bp,
    Endpoint(
        "delete",
        "/jobs/<job_id>",
        (
            Answer(200, Job, "Cancelled: the queued job will never run"),
            Answer(202, Job, "Cancellation requested for a running job"),
        ),
        (404, 409, 503),
        access="jobs",
        error_notes={409: "The job has already finished, or has finished training and is saving its model"},
    ),
)
def cancel(job_id: str) -> Response:
    """Cancel a queued job (it never runs) or ask a running one to stop at its next check."""
    s = services()
    job = _get(job_id)
    if job.status == "queued" and s.jobs.move(job_id, "cancelled", only_from={"queued"}, finished_at=now()):
        if job.sweep is None:  # a trial's group goes on for its other trials
            queueing.withdraw(s, job_id)
        return jsonify(_job(_get(job_id)))
    if job.pruned is not None:  # its group only keeps it for the end: it ends succeeded, with its rung's scores
        raise Problem(
            409,
            "Conflict",
            f"job {job_id} was pruned at rung {job.pruned} of its halving sweep and trains "
            "no more; it ends succeeded with its group",
        )
    if s.jobs.request_cancel(job_id):
        resp = jsonify(_job(_get(job_id)))
        resp.status_code = 202
        return resp
    job = _get(job_id)
    if job.status in FINISHED:
        raise Problem(409, "Conflict", f"job {job_id} has already {job.status}")
    if job.phase == "saving":
        raise Problem(
            409,
            "Conflict",
            f"job {job_id} has finished training and is saving its model; it can no longer be cancelled",
        )
    raise Problem(409, "Conflict", f"job {job_id} is {job.status}; try again", headers={"Retry-After": "1"})
