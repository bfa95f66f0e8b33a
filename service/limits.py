"""Per-client rate limits of POST /jobs, /predict and GET /models: Flask-Limiter, counted in the API's Redis.

A client is its token (by fingerprint, never the token itself) when the request carries a valid
one, else its address. POST /jobs counts the jobs it accepts (202: validation errors and
idempotent replays are free) and is refused once a client's count is full; GET and POST /predict
share one budget and count every request; GET /models counts every page. Over a limit the answer is 429, a problem document
with Retry-After (seconds); the limited endpoints also answer X-RateLimit-Limit, -Remaining and
-Reset. Fixed windows: "30/minute" allows 30 in each minute from a client's first request.

The limiter is built per app. When Redis does not answer it counts in the process's memory until
Redis is back (Flask-Limiter's in-memory fallback) and swallows its own errors: an outage never
turns a request into a 500.
"""

import math
import time
from collections.abc import Callable
from typing import Any, cast

import redis
from flask import Flask, Response, request
from flask.typing import ResponseReturnValue
from flask_limiter import HeaderNames, Limiter, RateLimitExceeded

from service import auth, endpoints, problems
from service.endpoints import Endpoint
from service.settings import Settings

LIMITER_RETRY_AFTER = "X-Limiter-Retry-After"


def client_key() -> str:
    """The bucket of this request's client: its token's fingerprint, else its address."""
    return auth.client_id() or f"addr:{request.remote_addr or 'unknown'}"


def limit_of(endpoint: Endpoint | None, settings: Settings) -> str | None:
    """The rate limit the endpoint has under these settings ('30/minute'), or None."""
    if endpoint is None or endpoint.rate_limit is None:
        return None
    return {
        "jobs": settings.rate_limit_jobs,
        "predict": settings.rate_limit_predict,
        "models": settings.rate_limit_models,
    }[endpoint.rate_limit] or None


def install(app: Flask, settings: Settings, store: redis.Redis) -> Limiter | None:
    """Rate-limit the app's declared endpoints (its views are registered by now); counts in store's Redis.

    With every limit off there is no limiter at all: its per-request bookkeeping costs more than a prediction.
    """
    limited = {name: (e, limit) for name, e in endpoints.declared(app).items() if (limit := limit_of(e, settings))}
    if not limited:
        return None

    # Flask-Limiter writes its Retry-After on every answer of a limited endpoint (and over the one a
    # 409 or 503 already has); it is renamed here and dropped, and 429s get theirs from _too_many.
    # Registered before the limiter's own hook, so it runs after it.
    @app.after_request
    def _drop_limiter_retry_after(response: Response) -> Response:
        response.headers.pop(LIMITER_RETRY_AFTER, None)
        return response

    # The limiter counts in the API's own Redis connections (its type says only str and int options).
    storage_options: dict[str, Any] = {
        "connection_pool": store.connection_pool,
        "key_prefix": f"{settings.job_key_prefix}:ratelimit",
    }
    limiter = Limiter(
        client_key,
        app=app,
        storage_uri=settings.redis_url,
        storage_options=storage_options,
        strategy="fixed-window",
        headers_enabled=True,
        header_name_mapping={HeaderNames.RETRY_AFTER: LIMITER_RETRY_AFTER},
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )

    @limiter.request_filter
    def _unlimited() -> bool:
        # Endpoints without a limit skip the limiter's bookkeeping, which costs more than a prediction.
        return request.endpoint not in limited

    for name, (endpoint, limit) in limited.items():
        kind = endpoint.rate_limit
        if kind == "jobs":  # only accepted jobs count
            wrap = limiter.limit(limit, deduct_when=lambda r: r.status_code == 202)
        elif kind == "models":  # every page of /models counts
            wrap = limiter.limit(limit)
        else:  # every prediction request counts, GET and POST in one budget
            wrap = limiter.shared_limit(limit, scope="predict")
        view = cast(Callable[..., ResponseReturnValue], app.view_functions[name])  # the views are synchronous
        app.view_functions[name] = wrap(view)

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> Response:
        seconds = 1
        try:
            current = limiter.current_limit
            if current is not None:
                seconds = max(1, math.ceil(current.window.reset_time - time.time()))
        except Exception:  # noqa: BLE001 (the store went away meanwhile: retry soon)
            pass
        return problems.response(
            429,
            "Too Many Requests",
            f"this client is over its limit of {exc.description} for {request.method} {request.path}; "
            "retry after the seconds in Retry-After",
            headers={"Retry-After": str(seconds)},
        )

    return limiter
