"""Echo predictions from a saved model."""

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from flask import Blueprint, Response, jsonify

from service import auth, limits
from service.batching import MIN_LENGTH, MIN_ROWS, bucket
from service.endpoints import Answer, Endpoint, route
from service.model_versions import ModelInfo
from service.problems import Problem
from service.routes import json_body, parse, query_args, services
from service.schemas import MAX_QUERY_BITS, PredictBody, PredictMany, PredictOne, PredictQuery
from service.serving import LoadedModel

if TYPE_CHECKING:
    from service.app import Services

bp = Blueprint("predict", __name__)


def _too_large(sequences: list[str]) -> None:
    limits = services().settings
    if len(sequences) > limits.max_sequences:
        raise Problem(413, "Content Too Large", f"at most {limits.max_sequences} sequences per request")
    longest = max(len(s) for s in sequences)
    if longest > limits.max_sequence_bits:
        raise Problem(
            413, "Content Too Large", f"a sequence has {longest} bits; the limit is {limits.max_sequence_bits}"
        )


def echo(
    s: "Services", sequences: list[str], ref: str | None, can_see: Callable[[str | None], bool], client: str | None
) -> tuple[dict, list[dict]]:
    """Run the model on bit strings of any lengths, grouped by length bucket; the model info and one result each.

    can_see(owner) says whose jobs' models the caller may name, and whose job ids the answer shows; a version
    this process must load first
    counts against client's loads (None: this caller may not cause a load, service.fast_predict's case,
    which calls this without Flask globals).
    """
    groups = _by_bucket([len(seq) for seq in sequences])
    cells = sum(bucket(len(rows), MIN_ROWS) * length for length, rows in groups.items())

    def before_load(info: ModelInfo) -> None:  # refused before a load costs anyone anything
        _within_budget(s, cells * _trained_state_size(s, info))
        if s.models.is_champion(info):  # everyone's model: loading it counts against no one
            return
        if client is None:
            raise NotLoaded(info.uri)
        s.load_limit.admit(client, info)

    info, model = s.models.get(ref, can_see=can_see, before_load=before_load)
    _within_budget(s, cells * model.state_size)
    if len(groups) == 1:
        return info.as_dict(can_see), _run(model, sequences)
    results: dict[int, dict] = {}
    for rows in groups.values():
        group = [sequences[r] for r in rows]
        results.update(zip(rows, _run(model, group)))
    return info.as_dict(can_see), [results[r] for r in range(len(sequences))]


class NotLoaded(Exception):
    """The version is not loaded in this process and the caller may not load it."""


def _within_budget(s: "Services", cost: int) -> None:
    budget = s.settings.predict_budget
    if cost > budget:
        raise Problem(
            413,
            "Content Too Large",
            f"the request asks for {cost:,} cells × state size of work, over the "
            f"budget of {budget:,} (PREDICT_BUDGET); send fewer or shorter sequences per request",
        )


def _trained_state_size(s: "Services", info: ModelInfo) -> int:
    """The state size the version's job trained, from its record (1 once the record has expired): known before loading."""
    job = s.jobs.get(info.job_id) if info.job_id else None
    return int(job.params.get("state_size", 1)) if job is not None else 1


def _by_bucket(lengths: list[int]) -> dict[int, list[int]]:
    """Row indices grouped by their length's power-of-two bucket: one padded rectangle per group, not one for all."""
    if len(set(lengths)) == 1:  # the common batch: one length, one group
        return {bucket(lengths[0], MIN_LENGTH): list(range(len(lengths)))}
    groups: dict[int, list[int]] = {}
    buckets: dict[int, int] = {}  # a batch has a few distinct lengths, each bucketed once
    for row, n in enumerate(lengths):
        b = buckets.get(n) or buckets.setdefault(n, bucket(n, MIN_LENGTH))
        groups.setdefault(b, []).append(row)
    return groups


def _run(model: LoadedModel, sequences: list[str]) -> list[dict]:
    lengths = [len(s) for s in sequences]
    if min(lengths) == max(lengths):
        bits = (
            (np.frombuffer("".join(sequences).encode(), np.uint8) - ord("0"))
            .astype(np.int32)
            .reshape(len(sequences), -1)
        )
    else:
        bits = np.zeros((len(sequences), max(lengths)), np.int32)
        for row, s in enumerate(sequences):
            bits[row, : len(s)] = np.frombuffer(s.encode(), np.uint8) - ord("0")
    p_one = model.predict(bits)
    # Whole-group NumPy; each result holds views that the JSON provider writes without lists.
    width = p_one.shape[1]
    echoes = np.where(p_one > 0.5, ord("1"), ord("0")).astype(np.uint8).tobytes().decode()
    rounded = np.round(p_one.astype(np.float64, order="C"), 6)  # rows contiguous: orjson writes each as it is
    return [
        {
            "sequence": s,
            "echo": echoes[row * width : row * width + n],
            "probabilities": rounded[row, :n],
            "echo_step": model.echo_step,
        }
        for row, (s, n) in enumerate(zip(sequences, lengths))
    ]


@route(
    bp,
    Endpoint(
        "get",
        "/predict",
        (Answer(200, PredictOne),),
        (400, 403, 404, 413, 422, 503),
        query=PredictQuery,
        access="models",
        rate_limit="predict",
    ),
)
def predict_one() -> Response:
    """Echo one bit sequence: ?sequence=0110…&model=REF."""
    args = query_args()
    if len(args.get("sequence", "")) > services().settings.max_sequence_bits:
        _too_large([args["sequence"]])
    if len(args.get("sequence", "")) > MAX_QUERY_BITS:
        raise Problem(
            413,
            "Content Too Large",
            f"GET /predict takes at most {MAX_QUERY_BITS} bits in its query; send longer sequences with POST /predict",
        )
    query = parse(PredictQuery, args, "query")
    model, results = echo(services(), [query.sequence], query.model, auth.can_see, limits.client_key())
    return jsonify(model=model, **results[0])


@route(
    bp,
    Endpoint(
        "post",
        "/predict",
        (Answer(200, PredictMany),),
        (400, 403, 404, 413, 415, 422, 503),
        body=PredictBody,
        access="models",
        rate_limit="predict",
    ),
)
def predict_many() -> Response:
    """Echo a batch: {"sequences": [...], "model": REF}."""
    data = json_body()
    if isinstance(data, dict) and isinstance(data.get("sequences"), list):
        _too_large([s if isinstance(s, str) else "" for s in data["sequences"]] or [""])
    body = parse(PredictBody, data, "body")
    model, results = echo(services(), body.sequences, body.model, auth.can_see, limits.client_key())
    return jsonify(model=model, results=results)
