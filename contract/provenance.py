"""Which registered models this service produced: a record per version, written by the worker that
registered it, kept in Redis (which MLflow's users cannot write), and the digest of its files.

The API serves a version only if its record names the version's run and the downloaded files
have the recorded digest: a model registered or altered through MLflow alone is never loaded.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from redis import Redis

# Where our workers' models keep the TensorFlow SavedModel inside the MLflow model directory.
SAVED_MODEL_DIR = "tf2model"
# Beside it, the same network as an ONNX graph: what the API serves (without TensorFlow).
SERVING_FILE = "echo_rnn.onnx"
SERVING_INPUT, SERVING_OUTPUT = "sequences", "p_one"
SERVING_META_ECHO_STEP, SERVING_META_STATE_SIZE = "echo_step", "state_size"  # the graph's metadata
# The graph's weights as outputs too ("weight_W", ...): the API reads them from the checked graph for
# its NumPy forward pass of large batches. Graphs written before them lack these outputs.
SERVING_WEIGHTS = ("W", "b", "W2", "b2")
SERVING_WEIGHT_OUTPUT = "weight_{}"
SERVING_MAX_BYTES = 1 << 20  # the largest ONNX file the API reads (the largest state, 256 units: about 270 KB)


@dataclass(frozen=True)
class Provenance:
    """A registered version this service produced."""

    name: str
    version: str
    job_id: str
    run_id: str
    digest: str  # sha256 over the SavedModel's files
    serving_digest: str | None = None  # sha256 of the ONNX file; None for versions made before it was written
    serving_uri: str | None = None  # the ONNX file's artifact URI: the API fetches it without asking MLflow where it is


def version_uri(name: str, version: str | int) -> str:
    """A registered version's URI as job records and the API name it (models:/NAME/VERSION)."""
    return f"models:/{name}/{version}"


def key(prefix: str, name: str, version: str) -> str:
    """The Redis key of a version's record."""
    return f"{prefix}:model:{name}:{version}"


def record(redis: Redis, prefix: str, provenance: Provenance) -> None:
    """Write the record of a version this service registered (kept for good: versions are too)."""
    redis.set(key(prefix, provenance.name, provenance.version), encoded(provenance))


def encoded(provenance: Provenance) -> str:
    """A version's record as it is stored (a worker writes it in the fenced step that records the version)."""
    return json.dumps(asdict(provenance))


def lookup(redis: Redis, prefix: str, name: str, version: str) -> Provenance | None:
    """The record of a version, or None when this service did not produce it."""
    raw = redis.get(key(prefix, name, version))
    if not raw:
        return None
    known = {f.name for f in fields(Provenance)}  # a record written by a newer worker may say more
    return Provenance(**{k: v for k, v in json.loads(raw).items() if k in known})


def copy(redis: Redis, prefix: str, source: Provenance, version: str) -> None:
    """Record another version registered from the same run and files (benchmarks and tests load copies)."""
    record(redis, prefix, replace(source, version=version))


def serving_uri(model_location: str) -> str:
    """Where a version's ONNX graph is: beside its SavedModel, in the model's artifact location."""
    return f"{model_location.rstrip('/')}/{SERVING_FILE}"


def file_digest(data: bytes) -> str:
    """sha256 of one file's bytes (the ONNX file's digest)."""
    return hashlib.sha256(data).hexdigest()


def digest(model_dir: str | Path) -> str:
    """sha256 over every file of the model's SavedModel directory, names included, in a fixed order."""
    root = Path(model_dir) / SAVED_MODEL_DIR
    sha = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(root)).encode() + b"\0")
        sha.update(hashlib.sha256(path.read_bytes()).digest())
    return sha.hexdigest()
