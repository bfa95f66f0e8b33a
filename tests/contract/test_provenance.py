"""Version records in a real Redis: written, read back, copied, and readable when a newer worker says more."""

import json

from contract import provenance
from contract.provenance import Provenance


def test_a_record_reads_back_and_copies_to_another_version(redis_client):
    made = Provenance(
        "echo-rnn", "3", "job-1", "r" * 32, "d" * 64, "s" * 64, "mlflow-artifacts:/1/models/m-1/artifacts/echo_rnn.onnx"
    )
    provenance.record(redis_client, "prov-test", made)
    assert provenance.lookup(redis_client, "prov-test", "echo-rnn", "3") == made
    provenance.copy(redis_client, "prov-test", made, "4")
    assert provenance.lookup(redis_client, "prov-test", "echo-rnn", "4") == Provenance(
        **{**made.__dict__, "version": "4"}
    )
    assert provenance.lookup(redis_client, "prov-test", "echo-rnn", "5") is None


def test_records_older_or_newer_than_this_code_are_read(redis_client):
    older = {"name": "echo-rnn", "version": "8", "job_id": "j", "run_id": "r", "digest": "d"}
    redis_client.set(provenance.key("prov-test", "echo-rnn", "8"), json.dumps(older))
    assert provenance.lookup(redis_client, "prov-test", "echo-rnn", "8").serving_uri is None
    newer = {**older, "version": "9", "serving_digest": "s", "a_field_of_a_later_release": 1}
    redis_client.set(provenance.key("prov-test", "echo-rnn", "9"), json.dumps(newer))
    assert provenance.lookup(redis_client, "prov-test", "echo-rnn", "9").serving_digest == "s"
