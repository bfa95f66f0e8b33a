"""Idempotency-Key on POST /jobs and POST /sweeps: the same key with the same body gives the same job (or
sweep), made once; each has its own keys.

As Stripe's and SageMaker's job APIs do: a client that does not know whether its submission
arrived (a timeout, a dropped connection) sends it again with the same key and gets the job the
first one made (200, `Idempotent-Replayed: true`) instead of a second job. The same key with
another body is a 422; a key is kept for IDEMPOTENCY_TTL_S (24 h by default) after its job or sweep was made.

In Redis, per client scope (the token's fingerprint when tokens are on, else one shared scope),
`<prefix>:idempotency:<scope>:<sha256 of the key>` holds {fingerprint, job_id} (job_id: the id of what the
key made, a job or a sweep; the field's name is what old values carry): the fingerprint is the SHA-256
of the validated parameters (defaults filled in, the seed as sent: a replay returns the seed the first
request drew). The first request reserves the key with SET NX before it
creates the job, so concurrent duplicates make exactly one job: the others wait for its id
(up to WAIT_S, then 409 with Retry-After). While its request runs, a reservation is renewed every
third of PENDING_TTL_S (compare-and-set: only its own), so a slow request never loses its key to a
retry; one whose request died (its process gone) lapses after PENDING_TTL_S; a request that fails
(503) gives its reservation back, so a retry can succeed.
"""

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, g, has_request_context, request
from redis import Redis
from redis.exceptions import RedisError

from contract.redis_values import text
from service.endpoints import Answer
from service.problems import Problem

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_CHARS = 255
# The header as the OpenAPI document describes it.
PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
    "description": "Any unique string (a UUID): the same key with the same body answers what the first request made "
    "(200) instead of queueing another; kept for IDEMPOTENCY_TTL_S, per token when tokens are on.",
}
CONFLICT = f"A request with the same {HEADER} is still being processed; retry after Retry-After"
REUSED = f"a malformed {HEADER}, or an {HEADER} already used with a different body"


def replay_answer(schema: type, what: str, location: dict) -> Answer:
    """The OpenAPI answer of a submission replayed: 200, what the first request made as it is now."""
    return Answer(
        200,
        schema,
        f"The {what} an earlier request with the same {HEADER} and body made, as it is now; nothing new was queued",
        {
            **location,
            REPLAYED: {
                "schema": {"type": "string", "const": "true"},
                "description": "This answer replays an earlier submission",
            },
        },
    )


PENDING_TTL_S = 30
WAIT_S = 5.0
POLL_S = 0.02

# Compare-and-set: only the request holding the reservation may complete or release it.
_COMPLETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
log = logging.getLogger(__name__)


def header_key() -> str | None:
    """The request's Idempotency-Key, None when absent; a 422 naming the header when it is unusable."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    message = None
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        message = f"must have 1 to {MAX_KEY_CHARS} characters"
    elif not all(" " <= c <= "~" for c in key):
        message = "must be printable ASCII"
    if message:
        raise Problem(
            422,
            "Invalid request",
            f"invalid header: {HEADER} {message}",
            [{"field": HEADER, "message": message, "location": "header"}],
        )
    return key


def fingerprint(params: dict[str, Any]) -> str:
    """SHA-256 of the parameters as canonical JSON."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class KeyClaim:
    """A key reserved for a new submission (made_id None), or the id of the job or sweep an earlier request made with it."""

    redis_key: str
    value: str
    fingerprint: str
    made_id: str | None = None
    renewal: "Renewal | None" = field(default=None, compare=False, repr=False)


class Renewal:
    """Keeps a reservation from lapsing while its request runs: its TTL renewed every third of it, if still its own."""

    def __init__(self, store: "IdempotencyStore", claim: KeyClaim):
        self.store, self.claim, self._stopped = store, claim, threading.Event()
        threading.Thread(target=self._run, name="idempotency-renewal", daemon=True).start()

    def _run(self) -> None:
        ttl_ms = int(self.store.pending_ttl_s * 1000)
        while not self._stopped.wait(self.store.pending_ttl_s / 3):
            try:
                if not self.store._renew(keys=[self.claim.redis_key], args=[self.claim.value, ttl_ms]):
                    return  # completed, released, or lapsed and taken: no longer this request's
            except RedisError:  # tried again at the next third; it lapses only if Redis stays away
                log.warning("could not renew an Idempotency-Key reservation", exc_info=True)

    def stop(self) -> None:
        """Stop renewing (the request completed, gave the key back or ended)."""
        self._stopped.set()


class IdempotencyStore:
    """Idempotency keys in Redis."""

    def __init__(
        self, redis: Redis, prefix: str, ttl_s: int, wait_s: float = WAIT_S, pending_ttl_s: float = PENDING_TTL_S
    ):
        self.redis, self.prefix, self.ttl_s = redis, prefix, ttl_s
        self.wait_s, self.pending_ttl_s = wait_s, pending_ttl_s
        self._complete = redis.register_script(_COMPLETE)
        self._release = redis.register_script(_RELEASE)
        self._renew = redis.register_script(_RENEW)

    def redis_key(self, scope: str, key: str) -> str:
        """Where a client's key is kept (hashed: any printable key, bounded size)."""
        return f"{self.prefix}:idempotency:{scope}:{hashlib.sha256(key.encode()).hexdigest()}"

    def claim(self, scope: str, key: str, fingerprint: str) -> KeyClaim:
        """Reserve key for a new job, or find the job it already made; 422 for another body."""
        redis_key = self.redis_key(scope, key)
        reservation = json.dumps({"fingerprint": fingerprint, "owner": uuid.uuid4().hex})
        deadline = time.monotonic() + self.wait_s
        while True:
            if self.redis.set(redis_key, reservation, nx=True, px=int(self.pending_ttl_s * 1000)):
                return KeyClaim(redis_key, reservation, fingerprint)
            raw = self.redis.get(redis_key)
            if raw is None:
                continue  # released or lapsed in between: reserve it again
            stored = json.loads(raw)
            if stored["fingerprint"] != fingerprint:
                raise Problem(
                    422,
                    "Idempotency-Key reused with a different body",
                    f"this {HEADER} was already used with other parameters; use a new key for a new submission",
                    [{"field": HEADER, "message": "already used with a different body", "location": "header"}],
                )
            if stored.get("job_id"):
                return KeyClaim(redis_key, text(raw), fingerprint, stored["job_id"])
            if time.monotonic() > deadline:
                raise Problem(
                    409,
                    "Conflict",
                    f"a request with this {HEADER} is still being processed; retry",
                    headers={"Retry-After": "1"},
                )
            time.sleep(POLL_S)

    def hold(self, claim: KeyClaim) -> KeyClaim:
        """Renew a reservation until it is completed or released (or stop() is called on its renewal)."""
        if claim.made_id is None and claim.renewal is None:
            claim.renewal = Renewal(self, claim)
        return claim

    def complete(self, claim: KeyClaim, made_id: str) -> None:
        """Record the job or sweep the reservation made; kept for the TTL."""
        if claim.renewal is not None:
            claim.renewal.stop()
        value = json.dumps({"fingerprint": claim.fingerprint, "job_id": made_id})
        self._complete(keys=[claim.redis_key], args=[claim.value, value, self.ttl_s])

    def release(self, claim: KeyClaim) -> None:
        """Give the key back (the request failed, or its job is gone), if it is still this claim's."""
        if claim.renewal is not None:
            claim.renewal.stop()
        self._release(keys=[claim.redis_key], args=[claim.value])


def claim_for(
    store: IdempotencyStore, scope: str, key: str, fingerprint: str, exists: Callable[[str], bool]
) -> KeyClaim:
    """Reserve key for a new submission, held while the request runs, or the claim of what it already made (if
    exists(its id) still holds)."""
    while True:
        claim = store.claim(scope, key, fingerprint)
        if claim.made_id is None:
            if has_request_context():  # the request's end stops the renewal, whatever happened (install)
                g.setdefault("idempotency_claims", []).append(claim)
            return store.hold(claim)
        if exists(claim.made_id):
            return claim
        store.release(claim)  # what it made is gone: the key starts afresh


def install(app: Flask) -> None:
    """Stop renewing a request's reservations when it ends: one that ended without recording its job lets its key lapse."""

    @app.teardown_request
    def _stop_renewals(_error: BaseException | None) -> None:
        for claim in g.pop("idempotency_claims", []):
            if claim.renewal is not None:
                claim.renewal.stop()


def release_quietly(store: IdempotencyStore, claim: KeyClaim | None) -> None:
    """Give a claim's key back after a failed submission; should Redis not answer, it lapses by itself."""
    if claim is None:
        return
    with suppress(RedisError):  # the reservation lapses by itself (PENDING_TTL_S)
        store.release(claim)
