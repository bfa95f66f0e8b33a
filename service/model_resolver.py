"""Turning a model reference into a registered version, remembering moving references for a short while."""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from redis.exceptions import RedisError

from contract import provenance
from contract.job_store import JobStore
from contract.mlflow_names import NOT_FOUND_CODES
from service import model_refs
from service.mlflow_errors import call_mlflow, or_not_found
from service.model_versions import ModelInfo
from service.problems import Problem

RESOLVED_REFS = 4096  # references remembered per process
log = logging.getLogger(__name__)


class ModelResolver:
    """Resolves references through MLflow; the default (the champion) and aliases are trusted for ttl_s, versions for good."""

    def __init__(
        self,
        client: MlflowClient,
        jobs: JobStore,
        name: str,
        ttl_s: float,
        alias: str = "champion",
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client, self.jobs, self.name, self.ttl_s, self.clock = client, jobs, name, ttl_s, clock
        self.alias = alias
        self._resolved: dict[str, tuple[float, ModelInfo, str | None]] = {}  # when, what, the job's owner
        self._lock = threading.Lock()

    def resolve(
        self,
        ref: str | None,
        still_usable: Callable[[ModelInfo], bool] = lambda _: False,
        can_see: Callable[[str | None], bool] = lambda _: True,
    ) -> ModelInfo:
        """The version ref names; 404 when there is none, or when it names a job the caller may not see.

        While MLflow is down, a moving reference keeps naming the version it named if
        still_usable(that version) (it is loaded here), and is asked again only after another TTL.
        """
        parsed = model_refs.parse(ref)
        if parsed is None:
            raise Problem(
                422,
                "Invalid model reference",
                model_refs.MESSAGE,
                [{"field": "model", "message": "not a model reference", "location": "query"}],
            )
        key = ref or ""
        with self._lock:
            cached = self._resolved.get(key)
        if cached and (not parsed.moves or self.clock() - cached[0] < self.ttl_s):
            if parsed.kind == "job" and not can_see(cached[2]):
                raise Problem(404, "Unknown job", f"no job {parsed.job_id}")
            return cached[1]
        owner = None
        try:
            if parsed.kind == "job":
                info, owner = call_mlflow(lambda: self._ask_job(parsed, key, can_see))
            else:
                info = call_mlflow(lambda: self._ask(parsed, ref or "the champion"))
                info = replace(info, owner=self._owner_of(info.job_id))
        except Problem as problem:
            if problem.status != 503 or cached is None or not still_usable(cached[1]):
                raise
            log.warning(
                "MLflow unavailable; %s still names %s: %s", ref or "the champion", cached[1].uri, problem.detail
            )
            info, owner = cached[1], cached[2]
        self._remember(key, info, owner)
        return info

    def champion(self) -> ModelInfo | None:
        """The version the default reference last resolved to in this process, if it has (no MLflow call)."""
        with self._lock:
            cached = self._resolved.get("")
        return cached[1] if cached else None

    def _remember(self, key: str, info: ModelInfo, owner: str | None) -> None:
        with self._lock:
            self._resolved.pop(key, None)
            self._resolved[key] = (self.clock(), info, owner)
            while len(self._resolved) > RESOLVED_REFS:  # the oldest entry goes first
                self._resolved.pop(next(iter(self._resolved)))

    def _ask_job(
        self, ref: model_refs.ModelRef, text: str, can_see: Callable[[str | None], bool]
    ) -> tuple[ModelInfo, str | None]:
        assert ref.job_id is not None, "a job reference names its job"
        job = self.jobs.get(ref.job_id)
        if job is None or not can_see(job.owner):
            raise Problem(404, "Unknown job", f"no job {ref.job_id}")
        model = job.model
        if model is None:
            raise Problem(404, "No model yet", f"job {ref.job_id} is {job.status} and has no saved model")
        version = or_not_found(lambda: self.client.get_model_version(model.name, model.version), text)
        info = ModelInfo.of(version)
        return replace(info, owner=job.owner if info.job_id == job.id else self._owner_of(info.job_id)), job.owner

    def _owner_of(self, job_id: str | None) -> str | None:
        """Who submitted the job that trained a version (answers name its job only to those who may see it)."""
        if not job_id:
            return None
        try:
            return self.jobs.owners([job_id])[0]
        except RedisError:  # unknown: the job's id is shown to those who see every job only
            return None

    def _ask(self, ref: model_refs.ModelRef, text: str) -> ModelInfo:
        if ref.kind == "default":
            try:
                return ModelInfo.of(self.client.get_model_version_by_alias(self.name, self.alias))
            except MlflowException as exc:
                if exc.error_code not in NOT_FOUND_CODES:
                    raise
                raise Problem(
                    404,
                    "No champion",
                    f"no version of {self.name} is champion yet (models:/{self.name}@"
                    f"{self.alias}): a job's model becomes champion once its held-out echo accuracy passes "
                    "the gate; name a version with model=",
                ) from exc
        if ref.kind == "version":
            name, number = _named(ref.name, ref.version)
            return ModelInfo.of(or_not_found(lambda: self.client.get_model_version(name, number), text))
        if ref.kind == "alias":
            name, alias = _named(ref.name, ref.alias)
            return ModelInfo.of(or_not_found(lambda: self.client.get_model_version_by_alias(name, alias), text))
        versions = sorted(self.client.search_model_versions(f"run_id = '{ref.run_id}'"), key=lambda v: -int(v.version))
        if not versions:
            raise Problem(404, "Unknown model", f"no registered model comes from MLflow run {ref.run_id}")
        # The version the service's job registered from the run, not one added to it through MLflow later.
        ours = [v for v in versions if provenance.lookup(self.jobs.redis, self.jobs.prefix, v.name, str(v.version))]
        return ModelInfo.of((ours or versions)[0])


def _named(name: str | None, which: str | None) -> tuple[str, str]:
    """A version or alias reference's model name and its version or alias (both set by model_refs.parse)."""
    assert name is not None and which is not None, "a version or alias reference names both"
    return name, which
