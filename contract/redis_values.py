"""Redis's answers as this code reads them: no client here sets decode_responses, so keys, members and
fields come back as bytes, while redis-py's signatures also allow str (and pairs, with withscores)."""

from collections.abc import Mapping
from typing import cast

from redis.typing import EncodableT, FieldT


def text(value: object) -> str:
    """A key, member or field that Redis returned, as text."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"not a Redis string: {value!r}")


def scored(answer: object) -> list[tuple[bytes, float]]:
    """The (member, score) pairs of a sorted-set range read with withscores=True."""
    return cast(list[tuple[bytes, float]], answer)


def hash_fields(fields: Mapping[str, str]) -> Mapping[FieldT, EncodableT]:
    """A hash's fields as redis-py's hset takes them (its key type is a union: a str-keyed dict is refused)."""
    return cast(Mapping[FieldT, EncodableT], fields)


def as_bytes(value: object) -> bytes | None:
    """A string value that Redis returned (None: no such key), as the bytes it is."""
    if value is None or isinstance(value, bytes):
        return value
    raise TypeError(f"not a Redis string read as bytes: {value!r}")
