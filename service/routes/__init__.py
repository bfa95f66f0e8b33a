"""HTTP routes, one module per resource."""

from typing import TYPE_CHECKING, Any, TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError

from service.problems import Problem, invalid

if TYPE_CHECKING:  # service.app imports the routes
    from service.app import Services

T = TypeVar("T", bound=BaseModel)


def services() -> "Services":
    """The app's Services."""
    return current_app.extensions["echo"]


def json_body() -> Any:
    """The request's JSON body, or a 415/400 problem."""
    if request.mimetype != "application/json":
        raise Problem(415, "Unsupported Media Type", "send the body as application/json")
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # Python's parser gives up on deep nesting (100,000 brackets) with this, not a ValueError
        raise Problem(400, "Bad Request", "the body is not valid JSON: nested too deeply") from None
    if data is None:
        raise Problem(400, "Bad Request", "the body is not valid JSON")
    return data


def parse(schema: type[T], data: Any, location: str) -> T:
    """Validate data against a schema, or a 422 naming each bad field."""
    if not isinstance(data, dict):
        raise Problem(
            422,
            "Invalid request",
            f"the {location} must be a JSON object",
            [{"field": "(body)", "message": "must be an object", "location": location}],
        )
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, location) from exc


def query_args() -> dict[str, str]:
    """Query parameters, each given once."""
    repeated = [k for k in request.args if len(request.args.getlist(k)) > 1]
    if repeated:
        raise Problem(400, "Bad Request", f"query parameter given more than once: {', '.join(repeated)}")
    return request.args.to_dict()
