"""The model-reference grammar: the request schema's pattern and the resolver's parser agree."""

import re

import pytest

from service import model_refs

JOB = "0f8fad5b-d9cb-469f-a165-70867728950e"
RUN = "a" * 32


@pytest.mark.parametrize(
    "ref, kind, parts",
    [
        (RUN, "run", {"run_id": RUN}),
        (JOB, "job", {"job_id": JOB}),
        ("models:/echo-rnn/12", "version", {"name": "echo-rnn", "version": "12"}),
        ("models:/echo-rnn@champion", "alias", {"name": "echo-rnn", "alias": "champion"}),
    ],
)
def test_each_form_parses_and_matches_the_schema_pattern(ref, kind, parts):
    parsed = model_refs.parse(ref)
    assert parsed.kind == kind and all(getattr(parsed, k) == v for k, v in parts.items())
    assert re.fullmatch(model_refs.PATTERN, ref)


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "A" * 32,
        "models:/echo-rnn/",
        "models:/echo-rnn/1234567890123456789",
        "models:/echo-rnn@",
        "models:/a/b/1",
        "models:/echo-rnn@caf\u00e9",
        "models:/echo-rnn/\u0661",
        JOB.upper(),
        "latest",
    ],
)
def test_what_is_no_reference_is_refused_by_both(ref):
    assert model_refs.parse(ref) is None
    assert not re.fullmatch(model_refs.PATTERN, ref)


def test_none_is_the_latest_version_and_only_latest_and_aliases_move():
    assert model_refs.parse(None).kind == "default"
    assert [model_refs.parse(r).moves for r in (None, "models:/m@a", "models:/m/1", RUN, JOB)] == [
        True,
        True,
        False,
        False,
        False,
    ]
