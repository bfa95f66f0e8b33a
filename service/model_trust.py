"""Which models the API will load: versions of its registered model that this service produced, whose
ONNX graph has the digest its worker recorded. Anything else is refused with a 403 problem naming the
reason. The API reads nothing of a model but that graph's bytes: no MLmodel, no SavedModel, no pickle,
no code.
"""

from contract import provenance
from contract.provenance import Provenance
from service.model_versions import ModelInfo
from service.problems import Problem

BACKFILL_COMMAND = "echo-rnn models backfill"


class Refusal(Problem):
    """A 403 that refuses to serve a version; lasting: the version can never be served (an API process
    remembers it and refuses at once), else until an administrator acts."""

    def __init__(self, detail: str, lasting: bool):
        super().__init__(403, "Model not served", detail)
        self.lasting = lasting


def refuse(info: ModelInfo, reason: str, lasting: bool = True) -> Refusal:
    """The problem that refuses to serve a version (see Refusal)."""
    return Refusal(f"{info.uri} is not served: {reason}", lasting)


def check_origin(info: ModelInfo, name: str, record: Provenance | None) -> Provenance:
    """The version belongs to the service's registered model, was registered by one of its jobs, and has its graph;
    returns its record."""
    if info.name != name:
        raise refuse(info, f"only versions of the registered model {name!r} are served")
    if record is None:
        raise refuse(info, "it was not produced by a job of this service")
    if record.run_id != info.run_id or (info.job_id is not None and record.job_id != info.job_id):
        raise refuse(info, "its run is not the one the service's job registered")
    if record.serving_digest is None:
        raise refuse(
            info,
            "it was registered before the service served ONNX graphs; an administrator adds them to "
            f"every such version once with `{BACKFILL_COMMAND}`",
            lasting=False,
        )
    return record


def check_graph(info: ModelInfo, graph: bytes, record: Provenance) -> None:
    """The downloaded ONNX graph is the one the service's worker wrote (checked before it is parsed)."""
    if len(graph) > provenance.SERVING_MAX_BYTES:
        raise refuse(info, f"its ONNX graph is over {provenance.SERVING_MAX_BYTES:,} bytes")
    if provenance.file_digest(graph) != record.serving_digest:
        raise refuse(info, "its files changed since the service registered it")
