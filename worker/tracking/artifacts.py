"""Uploading files to an MLflow artifact location, a few at once (MLflow's repositories send them one after
another), straight to the location a run or a logged model names: no request to look it up."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

UPLOADS_AT_ONCE = 4


def upload(location: str, tracking_uri: str, root: Path, under: str | None = None) -> None:
    """Upload the files under root (keeping their paths below it) to location, below under if given."""
    repo = get_artifact_repository(location, tracking_uri=tracking_uri)
    files = [f for f in root.rglob("*") if f.is_file()]

    def folder(f: Path) -> str | None:
        inside = None if f.parent == root else f.parent.relative_to(root).as_posix()
        return "/".join(p for p in (under, inside) if p) or None

    with ThreadPoolExecutor(min(UPLOADS_AT_ONCE, len(files) or 1), thread_name_prefix="uploads") as pool:
        for done in [pool.submit(repo.log_artifact, str(f), folder(f)) for f in files]:
            done.result()
