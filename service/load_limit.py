"""Loads of versions an API process does not hold yet, counted per client across the API's processes.

A load reads MLflow and builds a session: rare and dear beside a prediction. A client naming
version after version would keep every process loading (and evict what others use), so each
client (its token, else its address) may cause MODEL_LOADS_PER_CLIENT loads per window; past it a
429 says so. Predictions from loaded versions, the champion's among them, never count.
"""

import math
import time

from limits import parse
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter
from redis import Redis
from redis.exceptions import RedisError

from service.model_versions import ModelInfo
from service.problems import Problem


class LoadLimit:
    """Admits a client's load of a version, or refuses it with a 429 and Retry-After."""

    def __init__(self, redis: Redis, url: str, prefix: str, rate: str):
        self.rate = parse(rate) if rate else None
        storage = RedisStorage(url, connection_pool=redis.connection_pool, key_prefix=f"{prefix}:loadlimit")
        self.counter = FixedWindowRateLimiter(storage)

    def admit(self, client: str, info: ModelInfo) -> None:
        """Count one load by client; 429 when its window is full. Counts nothing while Redis is away."""
        if self.rate is None:
            return
        try:
            if self.counter.hit(self.rate, client):
                return
            reset, _ = self.counter.get_window_stats(self.rate, client)
        except RedisError:  # as the request limits do: an outage never refuses a request by itself
            return
        raise Problem(
            429,
            "Too Many Requests",
            f"{info.uri} is not loaded in this API process, and this client has caused its limit of {self.rate} model "
            "loads (MODEL_LOADS_PER_CLIENT); loaded versions, the champion among them, still answer at once",
            headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))},
        )
