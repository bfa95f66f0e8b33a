"""Which models the API will load: versions of its registered model that this service produced,
in the layout its workers write, with the files they registered. Anything else is refused with a
403 problem naming the reason, before any of the model's files is read as code or data.
"""

from pathlib import Path

import yaml

from contract import provenance
from contract.provenance import Provenance
from service.model_versions import ModelInfo
from service.problems import Problem


def refuse(info: ModelInfo, reason: str) -> Problem:
    """The problem that refuses to serve a version."""
    return Problem(403, "Model not served", f"{info.uri} is not served: {reason}")


def check_origin(info: ModelInfo, name: str, record: Provenance | None) -> None:
    """The version belongs to the service's registered model and was registered by one of its jobs."""
    if info.name != name:
        raise refuse(info, f"only versions of the registered model {name!r} are served")
    if record is None:
        raise refuse(info, "it was not produced by a job of this service")
    if record.run_id != info.run_id or (info.job_id is not None and record.job_id != info.job_id):
        raise refuse(info, "its run is not the one the service's job registered")


def check_files(info: ModelInfo, local: str, record: Provenance) -> None:
    """The downloaded model has our workers' layout (a plain TensorFlow SavedModel, no code, no pickles) and the registered files."""
    root = Path(local)
    try:
        meta = yaml.safe_load((root / "MLmodel").read_text())
        flavor = meta["flavors"]["tensorflow"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise refuse(info, f"its MLmodel file is not a TensorFlow model's ({type(exc).__name__})") from exc
    if flavor.get("model_type") != "tf2-module" or flavor.get("saved_model_dir") != provenance.SAVED_MODEL_DIR:
        raise refuse(info, "it is not a TensorFlow module saved as this service saves its models")
    if flavor.get("code") or (root / "code").exists() or any(root.rglob("*.pkl")) or any(root.rglob("*pickle*")):
        raise refuse(info, "it carries code or pickled objects")
    if not (root / provenance.SAVED_MODEL_DIR / "saved_model.pb").is_file():
        raise refuse(info, "its SavedModel is missing")
    if provenance.digest(root) != record.digest:
        raise refuse(info, "its files changed since the service registered it")
