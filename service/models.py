"""Finding a saved model in MLflow by reference, loading it once, and keeping it."""

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from redis.exceptions import RedisError

from service.metrics import CACHE_HITS, MODEL_LOADS
from service.problems import Problem
from service.serving import LoadedModel, configure_tensorflow
from worker.jobs import JobStore

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[\w-]+)$")
RESOLVED_REFS = 4096  # references remembered per process
log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ModelInfo:
    """A registered model version as predictions report it."""

    name: str
    version: str
    uri: str
    run_id: str | None
    job_id: str | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of this reference."""
        return {"name": self.name, "version": self.version, "uri": self.uri, "run_id": self.run_id, "job_id": self.job_id}


class ModelRegistry:
    """Resolves references through MLflow (aliases for a short TTL) and caches loaded models (LRU)."""

    def __init__(
        self, client: MlflowClient, jobs: JobStore, name: str, size: int, ttl_s: float, tensorflow_threads: int = 1
    ):
        self.client, self.jobs, self.name, self.size, self.ttl_s = client, jobs, name, size, ttl_s
        self.tensorflow_threads = tensorflow_threads
        self._loaded: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._resolved: dict[str, tuple[float, ModelInfo]] = {}
        self._versions: dict[tuple[str, str], ModelInfo] = {}
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = self.loads = 0

    def get(self, ref: str | None) -> tuple[ModelInfo, LoadedModel]:
        """The model a reference names, loading it on first use (once, however many requests ask)."""
        info = self.resolve(ref)
        key = (info.name, info.version)
        model = self._cached(key)
        if model is not None:
            return info, model
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            model = self._cached(key)
            if model is not None:
                return info, model
            model = self._load(info)
            with self._lock:
                self._loaded[key] = model
                self._versions[key] = info
                self._loading.pop(key, None)
                self.loads += 1
                MODEL_LOADS.inc()
                while len(self._loaded) > self.size:
                    self._loaded.popitem(last=False)
        return info, model

    def _cached(self, key: tuple[str, str]) -> LoadedModel | None:
        with self._lock:
            model = self._loaded.get(key)
            if model is not None:
                self._loaded.move_to_end(key)
                self.hits += 1
                CACHE_HITS.inc()
            return model

    def resolve(self, ref: str | None) -> ModelInfo:
        """Turn a reference into a registered version; 404 when there is none."""
        key = ref or ""
        cached = self._resolved.get(key)
        if cached and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        if ref and (m := VERSION_URI.match(ref)):  # a version loaded before: no need to ask MLflow
            with self._lock:
                known = self._versions.get((m["name"], m["version"]))
            if known is not None:
                return known
        try:
            info = self.call_mlflow(lambda: self._resolve(ref))
        except Problem as problem:
            # MLflow is down: 'latest' or an alias keeps naming the model it named, if that one is
            # loaded here, and is asked again only after another TTL.
            if problem.status != 503 or cached is None or not self._is_loaded(cached[1]):
                raise
            log.warning("MLflow unavailable; %s still names %s: %s", ref or "latest", cached[1].uri, problem.detail)
            self._remember(key, time.monotonic(), cached[1])
            return cached[1]
        # Versions are immutable; aliases and 'latest' move, so only they expire.
        self._remember(key, time.monotonic() if ref is None or ALIAS_URI.match(ref) else float("inf"), info)
        return info

    def _remember(self, key: str, since: float, info: ModelInfo) -> None:
        with self._lock:
            self._resolved.pop(key, None)
            self._resolved[key] = (since, info)
            while len(self._resolved) > RESOLVED_REFS:  # the oldest entry goes first
                self._resolved.pop(next(iter(self._resolved)))

    def _is_loaded(self, info: ModelInfo) -> bool:
        with self._lock:
            return (info.name, info.version) in self._loaded

    def _resolve(self, ref: str | None) -> ModelInfo:
        if ref is None:
            versions = self.client.search_model_versions(f"name = '{self.name}'", order_by=["version_number DESC"], max_results=1)
            if not versions:
                raise Problem(404, "No model", "no model is registered yet: train one with POST /jobs")
            return self._info(versions[0])
        if m := VERSION_URI.match(ref):
            return self._info(self._not_found(lambda: self.client.get_model_version(m["name"], m["version"]), ref))
        if m := ALIAS_URI.match(ref):
            return self._info(self._not_found(lambda: self.client.get_model_version_by_alias(m["name"], m["alias"]), ref))
        if JOB_ID.match(ref):
            job = self.jobs.get(ref)
            if job is None:
                raise Problem(404, "Unknown job", f"no job {ref}")
            if job.model is None:
                raise Problem(404, "No model yet", f"job {ref} is {job.status} and has no saved model")
            return self._info(self._not_found(lambda: self.client.get_model_version(job.model.name, job.model.version), ref))
        if RUN_ID.match(ref):
            versions = self.client.search_model_versions(f"run_id = '{ref}'")
            if not versions:
                raise Problem(404, "Unknown model", f"no registered model comes from MLflow run {ref}")
            return self._info(max(versions, key=lambda v: int(v.version)))
        raise Problem(
            422, "Invalid model reference",
            "model must be a job id, an MLflow run id, models:/NAME/VERSION or models:/NAME@ALIAS",
            [{"field": "model", "message": "not a model reference", "location": "query"}],
        )

    def _info(self, version) -> ModelInfo:
        return ModelInfo(
            name=version.name, version=str(version.version), uri=f"models:/{version.name}/{version.version}",
            run_id=version.run_id, job_id=(version.tags or {}).get("job_id"),
        )

    def _not_found(self, call, ref: str):
        try:
            return call()
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise Problem(404, "Unknown model", f"no model {ref}") from exc
            raise

    def _load(self, info: ModelInfo) -> LoadedModel:
        import mlflow.artifacts

        def download() -> str:
            # Download from the artifact location directly: models:/ URIs would consult the
            # process-global registry URI, not this registry's server.
            version = self.client.get_model_version(info.name, info.version)
            if version.model_id:
                location = self.client.get_logged_model(version.model_id).artifact_location
            else:
                location = self.client.get_model_version_download_uri(info.name, info.version)
            return mlflow.artifacts.download_artifacts(artifact_uri=location, tracking_uri=self.client.tracking_uri)

        local = self.call_mlflow(download)
        configure_tensorflow(self.tensorflow_threads)
        return LoadedModel(local)

    @staticmethod
    def call_mlflow(call):
        """Run an MLflow call; its failures (and the job store's, for job references) become a 503 problem."""
        try:
            return call()
        except Problem:
            raise
        except RedisError as exc:
            raise Problem(503, "Redis unavailable", f"the job store cannot be reached: {exc}"[:250]) from exc
        except MlflowException as exc:
            raise Problem(503, "MLflow unavailable", f"the model store failed: {exc.message[:200]}") from exc
        except OSError as exc:
            raise Problem(503, "MLflow unavailable", f"the model store cannot be reached: {exc}") from exc
