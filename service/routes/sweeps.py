"""Sweeps: many training jobs from one request, a grid or a random search; submit, follow, list, cancel."""

import logging

from flask import Blueprint, Response, jsonify, url_for
from redis.exceptions import RedisError

from contract.job import FINISHED
from contract.job_store import QuotaExceeded
from contract.sweep import SweepRequest, group
from contract.sweep_record import Sweep, SweepList
from service import auth, idempotency, limits, record_budget, sweep_actions
from service.endpoints import Answer, Endpoint, route
from service.problems import Problem
from service.routes import json_body, parse, query_args, services
from service.schemas import SweepListQuery

bp = Blueprint("sweeps", __name__)
log = logging.getLogger(__name__)
LOCATION = {"Location": {"schema": {"type": "string"}, "description": "The sweep's URL"}}
NOT_FOUND = {404: "Unknown sweep (or another token's)"}
SUBMIT = Endpoint(
    "post",
    "/sweeps",
    body=SweepRequest,
    access="jobs",
    rate_limit="jobs",
    answers=(
        Answer(202, Sweep, "Accepted: every trial is a queued job, its group queued as one task", LOCATION),
        idempotency.replay_answer(Sweep, "sweep", LOCATION),
    ),
    errors=(400, 409, 413, 415, 422, 429, 503),
    headers=(idempotency.PARAMETER,),
    error_notes={
        409: idempotency.CONFLICT,
        422: "Invalid request: errors names each field (an invalid trial by the parameter to change, such as "
        f"grid.state_size), more trials than MAX_SWEEP_TRIALS, {idempotency.REUSED}",
        429: "Over this client's rate limit (a sweep counts as one submission), over its MAX_RECORDS_PER_HOUR (a "
        "sweep counts each trial; deleted ones count too), or (with tokens) the token already has "
        "MAX_ACTIVE_SWEEPS_PER_TOKEN sweeps queued or running; retry after Retry-After seconds",
    },
)


def _sweep(sweep: Sweep) -> dict:
    return sweep.model_dump(mode="json")


def _get(sweep_id: str) -> Sweep:
    sweep = services().sweeps.get(sweep_id)
    if sweep is None or not auth.can_see(sweep.owner):  # another client's sweep is not there for this one
        raise Problem(404, "Not Found", f"no sweep {sweep_id}")
    return sweep


def _bounded(request: SweepRequest, most: int) -> None:
    """A 422 on the search's field when it makes more than most trials."""
    count = request.planned()
    if count > most:
        field = "grid" if request.grid is not None else "random.trials"
        message = f"the sweep makes {count} trials; this service takes at most {most} (MAX_SWEEP_TRIALS)"
        raise Problem(
            422, "Invalid request", f"invalid body: {field}", [{"field": field, "message": message, "location": "body"}]
        )


@route(bp, SUBMIT)
def submit() -> Response:
    """Queue a sweep: base training parameters and a grid or a random search over some of them."""
    key = idempotency.header_key()
    request = parse(SweepRequest, json_body(), "body")
    s = services()
    _bounded(request, s.settings.max_sweep_trials)
    owner = auth.client_id() if s.settings.tokens_on else None
    claim = None
    if key is not None:
        claim = idempotency.claim_for(
            s.idempotency,
            f"sweeps:{auth.client_id() or 'anonymous'}",
            key,
            idempotency.fingerprint(request.model_dump(mode="json")),
            lambda sweep_id: s.sweeps.raw(sweep_id) is not None,
        )
        if claim.made_id is not None:
            return _replay(claim.made_id)
    try:
        sweep = _create(request, owner)
    except Exception:  # a 429 or 503: a retry with the same key may make the sweep
        idempotency.release_quietly(s.idempotency, claim)
        raise
    if claim is not None:
        try:
            s.idempotency.complete(claim, sweep.id)
        except RedisError:  # the sweep is queued all the same; its key's reservation lapses unrecorded
            log.warning("sweep %s: its Idempotency-Key could not be recorded", sweep.id)
    resp = jsonify(_sweep(sweep))
    resp.status_code = 202
    resp.headers["Location"] = url_for("sweeps.show", sweep_id=sweep.id)
    return resp


def _create(request: SweepRequest, owner: str | None) -> Sweep:
    """Record the sweep and its trials and queue its groups (a 429 past the token's active sweeps)."""
    s = services()
    trials = request.trials()
    most = s.settings.max_active_sweeps_per_token
    reservation = s.records.reserve(limits.client_key(), request.planned())  # a tpe search's later batches too
    try:
        size = s.settings.sweep_group_size
        sweep = s.sweeps.create(request, trials, group(trials, size), owner=owner, max_active=most, group_size=size)
    except (QuotaExceeded, RedisError) as exc:  # nothing was written: its records go back
        record_budget.give_back_quietly(s.records, reservation)
        if isinstance(exc, RedisError):
            raise
        raise Problem(
            429,
            "Too Many Requests",
            f"this token already has {most} sweeps queued or running "
            "(MAX_ACTIVE_SWEEPS_PER_TOKEN); submit more once some have finished",
            headers={"Retry-After": "30"},
        ) from exc
    sweep_actions.enqueue(s, sweep)
    return sweep


def _replay(sweep_id: str) -> Response:
    """The sweep an earlier request with the same Idempotency-Key made, as it is now."""
    resp = jsonify(_sweep(_get(sweep_id)))
    resp.headers["Location"] = url_for("sweeps.show", sweep_id=sweep_id)
    resp.headers[idempotency.REPLAYED] = "true"
    return resp


@route(
    bp, Endpoint("get", "/sweeps/<sweep_id>", (Answer(200, Sweep),), (404, 503), access="jobs", error_notes=NOT_FOUND)
)
def show(sweep_id: str) -> Response:
    """One sweep: status, progress over all trials, each trial, the leaderboard and the best model."""
    return jsonify(_sweep(_get(sweep_id)))


@route(bp, Endpoint("get", "/sweeps", (Answer(200, SweepList),), (400, 422, 503), query=SweepListQuery, access="jobs"))
def index() -> Response:
    """Sweeps, newest first, each summed up without its trials (a token's own; every sweep for an admin token); ?limit=, ?cursor=."""
    query = parse(SweepListQuery, query_args(), "query")
    owner = None if auth.sees_everything() else auth.client_id()
    sweeps, cursor = services().sweeps.list(query.limit, query.cursor, owner=owner)
    return jsonify(sweeps=[s.model_dump(mode="json") for s in sweeps], next_cursor=cursor)


@route(
    bp,
    Endpoint(
        "delete",
        "/sweeps/<sweep_id>",
        (
            Answer(200, Sweep, "Cancelled: no trial is left running (queued ones never run)"),
            Answer(202, Sweep, "Queued trials cancelled; the running ones were asked to stop"),
        ),
        (404, 409, 503),
        access="jobs",
        error_notes={**NOT_FOUND, 409: "The sweep has already finished"},
    ),
)
def cancel(sweep_id: str) -> Response:
    """Cancel a sweep: every queued trial never runs, every running one stops at its next check."""
    head = services().sweeps.head(sweep_id)
    if head is None or not auth.can_see(head["owner"]):
        raise Problem(404, "Not Found", f"no sweep {sweep_id}")
    if head["status"] in FINISHED:
        raise Problem(409, "Conflict", f"sweep {sweep_id} has already {head['status']}")
    after, running = sweep_actions.cancel(services(), sweep_id, head["job_ids"])
    resp = jsonify(_sweep(after))
    resp.status_code = 202 if running else 200
    return resp
