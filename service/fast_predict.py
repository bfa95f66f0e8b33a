"""GET /predict's common case answered before Flask: the same answer as the route, for a fraction of the work.

Flask's request and response objects, routing and hooks cost more than the prediction itself. A
GET /predict whose query is valid, that needs no token and no rate limit, and whose model this
process can serve is answered here, by the route's own code (echo) and schema (PredictQuery), and
timed in the same latency histogram. Anything else (another path, a token to check, a limit to
count, a query or model that is refused, a version this process has not loaded) goes on to Flask, which answers it as documented: the
endpoint stays declared once, beside its view, and in the OpenAPI document.
"""

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from pydantic import ValidationError

from service.jsonio import OPTIONS
from service.metrics import LATENCY
from service.problems import Problem
from service.routes.predict import NotLoaded, echo
from service.schemas import MAX_QUERY_BITS, PredictQuery

if TYPE_CHECKING:
    from service.app import Services

WSGIApp = Callable[[dict[str, Any], Callable], Iterable[bytes]]
HEADERS = [("Content-Type", "application/json")]


class FastPredict:
    """WSGI middleware in front of the Flask app."""

    def __init__(self, flask_wsgi: WSGIApp, services: "Services"):
        self.flask_wsgi, self.services = flask_wsgi, services
        settings = services.settings
        # A token to check or a limit to count: Flask's hooks do that, for every such request.
        self.enabled = not settings.rate_limit_predict and not (settings.tokens_on and settings.predict_requires_token)
        self.max_bits = min(MAX_QUERY_BITS, settings.max_sequence_bits)
        # Without tokens anyone sees every job's model; with them, an anonymous caller sees none.
        self.can_see: Callable[[str | None], bool] = (lambda _: False) if settings.tokens_on else (lambda _: True)

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if (
            self.enabled
            and environ.get("PATH_INFO") == "/predict"
            and environ.get("REQUEST_METHOD") == "GET"
            and "HTTP_AUTHORIZATION" not in environ
        ):
            started = time.perf_counter()
            body = self._answer(environ.get("QUERY_STRING", ""))
            if body is not None:
                start_response("200 OK", [*HEADERS, ("Content-Length", str(len(body)))])
                LATENCY.labels("/predict", "GET", "200").observe(time.perf_counter() - started)
                return [body]
        return self.flask_wsgi(environ, start_response)

    def _answer(self, query: str) -> bytes | None:
        """The route's answer, or None for Flask to answer (and explain) instead."""
        pairs = parse_qsl(query, keep_blank_values=True)
        args = dict(pairs)
        if len(args) != len(pairs) or len(args.get("sequence", "")) > self.max_bits:
            return None
        try:
            parsed = PredictQuery.model_validate(args)
            model, results = echo(self.services, [parsed.sequence], parsed.model, self.can_see, None)
        except (ValidationError, Problem, NotLoaded):  # a load counts against its client: Flask knows who that is
            return None
        except Exception:  # noqa: BLE001 (Flask's route meets it again and answers with its problem document)
            return None
        return orjson.dumps({"model": model, **results[0]}, option=OPTIONS)
