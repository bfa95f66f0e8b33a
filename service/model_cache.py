"""Loaded models kept per process: each loaded once, however many requests ask, the least used evicted."""

import threading
from collections import OrderedDict
from collections.abc import Callable

from mlflow.tracking import MlflowClient
from redis import Redis

from contract import provenance
from service import model_trust
from service.metrics import CACHE_HITS, MODEL_LOADS
from service.mlflow_errors import call_mlflow
from service.model_download import download_graph
from service.model_resolver import ModelResolver
from service.model_versions import ModelInfo
from service.problems import Problem
from service.serving import LoadedModel

Key = tuple[str, str]
REFUSALS = 1024  # refused versions remembered per process


class ModelCache:
    """The models a reference names, loaded on first use and kept in an LRU of size entries."""

    def __init__(
        self,
        client: MlflowClient,
        redis: Redis,
        prefix: str,
        resolver: ModelResolver,
        size: int,
        serving_threads: int = 1,
    ):
        self.client, self.redis, self.prefix = client, redis, prefix
        self.resolver, self.size, self.serving_threads = resolver, size, serving_threads
        self._loaded: OrderedDict[Key, LoadedModel] = OrderedDict()
        self._refused: OrderedDict[Key, Problem] = OrderedDict()
        self._loading: dict[Key, threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = self.loads = 0

    def get(
        self,
        ref: str | None,
        can_see: Callable[[str | None], bool] = lambda _: True,
        before_load: Callable[[ModelInfo], None] = lambda _: None,
    ) -> tuple[ModelInfo, LoadedModel]:
        """The model a reference names and its version; can_see(owner) says whose jobs' models the caller may use.

        before_load(info) runs only when this process must load the version first, and may refuse it (a Problem).
        """
        info = self.resolver.resolve(ref, still_usable=self.is_loaded, can_see=can_see)
        key = (info.name, info.version)
        model = self._cached(key)
        if model is not None:
            return info, model
        if key in self._refused:  # known unservable: refused at once, costing no load
            raise self._refused[key]
        before_load(info)
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            model = self._cached(key)
            if model is not None:
                return info, model
            model = self._load(info)
            with self._lock:
                self._loaded[key] = model
                self._loading.pop(key, None)
                self.loads += 1
                MODEL_LOADS.inc()
                self._evict()
        return info, model

    def is_champion(self, info: ModelInfo) -> bool:
        """Whether this version is the one the default reference (the champion) last named here."""
        return self.resolver.champion() == info

    def is_loaded(self, info: ModelInfo) -> bool:
        """Whether this version is loaded here."""
        with self._lock:
            return (info.name, info.version) in self._loaded

    def _evict(self) -> None:
        """Down to size, least recently used first; never the champion, however many versions others name."""
        champion = self.resolver.champion()
        kept = (champion.name, champion.version) if champion is not None else None
        for key in [k for k in self._loaded if k != kept][: max(0, len(self._loaded) - self.size)]:
            del self._loaded[key]

    def _cached(self, key: Key) -> LoadedModel | None:
        with self._lock:
            model = self._loaded.get(key)
            if model is not None:
                self._loaded.move_to_end(key)
                self.hits += 1
                CACHE_HITS.inc()
            return model

    def _load(self, info: ModelInfo) -> LoadedModel:
        key = (info.name, info.version)
        if key in self._refused:
            raise self._refused[key]
        try:
            record = model_trust.check_origin(
                info,
                self.resolver.name,
                call_mlflow(lambda: provenance.lookup(self.redis, self.prefix, info.name, info.version)),
            )
            graph = call_mlflow(lambda: download_graph(self.client, info, record))
            if graph is None:
                raise model_trust.refuse(info, "its ONNX graph is missing from the model store")
            model_trust.check_graph(info, graph, record)
            try:
                return LoadedModel(graph, self.serving_threads)
            except Exception as exc:  # ours, checked, and still unloadable: the server's fault, said so
                raise Problem(
                    503, "Model unavailable", f"{info.uri} could not be loaded: {type(exc).__name__}"
                ) from exc
        except Problem as problem:
            if problem.status == 403 and getattr(problem, "lasting", False):
                with self._lock:
                    self._refused[key] = problem
                    while len(self._refused) > REFUSALS:
                        self._refused.popitem(last=False)
            raise
