"""Timestamps of job records: ISO 8601 UTC with milliseconds."""

from datetime import UTC, datetime


def now() -> str:
    """The current time, ISO 8601 UTC."""
    return iso(None)


def iso(millis: int | None) -> str:
    """A time in milliseconds since the epoch (now when None) as ISO 8601 UTC."""
    moment = datetime.now(UTC) if millis is None else datetime.fromtimestamp(millis / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(stamp: str) -> float:
    """An ISO 8601 timestamp of ours as seconds since the epoch."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
