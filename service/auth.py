"""API tokens: 'Authorization: Bearer <token>' on the endpoints that need one.

With API_TOKENS (or API_ADMIN_TOKENS) set, the endpoints declared with access "jobs" (submit, list, read one, cancel)
need a token, and with PREDICT_REQUIRES_TOKEN those with access "models" (/predict, /models) too;
public ones (/healthz, /readyz, /openapi.json, /docs, /metrics) never do. Without tokens nothing
asks for one.

A presented token is compared with every configured one, in constant time: both sides are hashed
(SHA-256) first, so the comparisons take the same time whatever the lengths, and all of them run
whichever matches. A token is never logged, never put in a Redis key and never repeated in an
answer: a client is known by the token's fingerprint (the first 16 hex digits of its SHA-256).
"""

import hashlib
import hmac

from flask import Flask, g, request

from service import endpoints
from service.endpoints import Endpoint
from service.problems import Problem
from service.settings import Settings

REALM = "echo-rnn"


def needs_token(endpoint: Endpoint | None, settings: Settings) -> bool:
    """Whether the endpoint answers 401 without a valid token under these settings."""
    if endpoint is None or not settings.tokens_on:
        return False
    return endpoint.access == "jobs" or (endpoint.access == "models" and settings.predict_requires_token)


class Tokens:
    """The configured tokens, kept as SHA-256 digests."""

    def __init__(self, tokens: list[str]):
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def match(self, presented: str) -> str | None:
        """The client id ('token:<fingerprint>') of the configured token equal to presented, or None."""
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for candidate in self._digests:  # no early exit: every token is compared
            if hmac.compare_digest(digest, candidate):
                found = candidate
        return None if found is None else f"token:{found.hex()[:16]}"


def client_of(token: str) -> str:
    """The client id of a token: 'token:' and the first 16 hex digits of its SHA-256."""
    return f"token:{hashlib.sha256(token.encode()).hexdigest()[:16]}"


def bearer_token() -> str | None:
    """The token of the request's 'Authorization: Bearer ...' header, or None."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def client_id() -> str | None:
    """Who sent this request: 'token:<fingerprint>' when it carries a valid token, else None."""
    return g.get("client")


def sees_everything() -> bool:
    """Whether this request may see every client's jobs: tokens are off, or it carries an admin token."""
    return not g.get("tokens_on") or bool(g.get("admin"))


def can_see(owner: str | None) -> bool:
    """Whether this request may see (and cancel) a job submitted by owner."""
    return sees_everything() or (owner is not None and owner == client_id())


def install(app: Flask, settings: Settings) -> None:
    """Check tokens before the protected views run (and identify any client that sends a valid one)."""
    tokens = Tokens([t.get_secret_value() for t in settings.api_tokens + settings.api_admin_tokens])
    admins = {client_of(t.get_secret_value()) for t in settings.api_admin_tokens}

    @app.before_request
    def _authenticate() -> None:
        g.client, g.admin, g.tokens_on = None, False, bool(tokens)
        if not tokens:
            return
        presented = bearer_token()
        if presented is not None:
            g.client = tokens.match(presented)
            g.admin = g.client in admins
        if g.client is not None or not needs_token(endpoints.of(app, request.endpoint), settings):
            return
        if presented is None:
            raise Problem(
                401,
                "Unauthorized",
                "this endpoint needs a token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
            )
        raise Problem(
            401,
            "Unauthorized",
            "the bearer token is not valid",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
        )
