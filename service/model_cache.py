"""Loaded models kept per process: each loaded once, however many requests ask, the least used evicted."""

import threading
from collections import OrderedDict

from mlflow.tracking import MlflowClient

from service.metrics import CACHE_HITS, MODEL_LOADS
from service.mlflow_errors import call_mlflow
from service.model_download import download
from service.model_resolver import ModelResolver
from service.model_versions import ModelInfo
from service.serving import LoadedModel, configure_tensorflow

Key = tuple[str, str]


class ModelCache:
    """The models a reference names, loaded on first use and kept in an LRU of size entries."""

    def __init__(self, client: MlflowClient, resolver: ModelResolver, size: int, tensorflow_threads: int = 1):
        self.client, self.resolver, self.size, self.tensorflow_threads = client, resolver, size, tensorflow_threads
        self._loaded: OrderedDict[Key, LoadedModel] = OrderedDict()
        self._loading: dict[Key, threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = self.loads = 0

    def get(self, ref: str | None) -> tuple[ModelInfo, LoadedModel]:
        """The model a reference names and its version."""
        info = self.resolver.resolve(ref, still_usable=self.is_loaded)
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
                self._loading.pop(key, None)
                self.loads += 1
                MODEL_LOADS.inc()
                while len(self._loaded) > self.size:
                    self._loaded.popitem(last=False)
        return info, model

    def is_loaded(self, info: ModelInfo) -> bool:
        """Whether this version is loaded here."""
        with self._lock:
            return (info.name, info.version) in self._loaded

    def _cached(self, key: Key) -> LoadedModel | None:
        with self._lock:
            model = self._loaded.get(key)
            if model is not None:
                self._loaded.move_to_end(key)
                self.hits += 1
                CACHE_HITS.inc()
            return model

    def _load(self, info: ModelInfo) -> LoadedModel:
        local = call_mlflow(lambda: download(self.client, info))
        configure_tensorflow(self.tensorflow_threads)
        return LoadedModel(local)
