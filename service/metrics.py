"""Prometheus metrics of the API: request latency, jobs by status, queue length, model cache, Redis memory."""

import logging
import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError

from contract.job_store import RECONCILER_EVENTS, JobStore
from contract.logs import job_id_var
from service import redis_memory
from service.endpoints import Answer, Endpoint, route

log = logging.getLogger("service.requests")

LATENCY = Histogram(
    "echo_rnn_http_request_duration_seconds",
    "Time to answer a request, by endpoint.",
    ["endpoint", "method", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CACHE_HITS = Counter("echo_rnn_model_cache_hits_total", "Predictions served by an already loaded model.")
MODEL_LOADS = Counter("echo_rnn_model_loads_total", "Models loaded from MLflow into this API.")


class JobCollector:
    """Jobs by status, the queue's length and Redis's memory against its maxmemory, read from Redis at scrape time."""

    def __init__(self, jobs: JobStore, queue: str = "celery"):
        self.jobs, self.queue = jobs, queue

    def collect(self) -> Iterator[Metric]:
        """The families, read now; none when Redis does not answer."""
        by_status = GaugeMetricFamily("echo_rnn_jobs", "Jobs by status.", labels=["status"])
        queue = GaugeMetricFamily("echo_rnn_queue_length", "Tasks waiting in the Celery queue.")
        reconciler = CounterMetricFamily(
            "echo_rnn_reconciler_events",
            "What the workers' watchdog did: jobs taken over, messages sent again, sweeps finished, and its errors.",
            labels=["event"],
        )
        used = GaugeMetricFamily("echo_rnn_redis_used_memory_bytes", "Memory Redis uses (INFO memory).")
        bound = GaugeMetricFamily(
            "echo_rnn_redis_maxmemory_bytes", "Redis's maxmemory (0: none); past it, writes are refused."
        )
        try:
            for status, count in sorted(self.jobs.count_by_status().items()):
                by_status.add_metric([status], count)
            queue.add_metric([], self.jobs.redis.llen(self.queue))
            counted = self.jobs.redis.hgetall(self.jobs.reconciler_key())
            memory = redis_memory.read(self.jobs.redis)
        except RedisError:
            return
        for event in RECONCILER_EVENTS:
            reconciler.add_metric([event], int(counted.get(event.encode(), 0)))
        used.add_metric([], memory.used)
        bound.add_metric([], memory.max)
        yield from (by_status, queue, reconciler, used, bound)


def instrument(app: Flask, jobs: JobStore, multiprocess_dir: str | None) -> None:
    """Time and log every request, and serve /metrics."""
    jobs_registry = CollectorRegistry(auto_describe=True)
    jobs_registry.register(JobCollector(jobs))

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        job_id_var.set((request.view_args or {}).get("job_id"))

    @app.after_request
    def _observe(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "(unmatched)"
        LATENCY.labels(endpoint, request.method, str(response.status_code)).observe(elapsed)
        if endpoint == "/predict" and response.status_code == 200:
            return response  # counted and timed above; a line each would cost more than the prediction
        log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={"status": response.status_code, "duration_ms": round(elapsed * 1000, 3), "endpoint": endpoint},
        )
        return response

    @route(app, Endpoint("get", "/metrics", (Answer(200, {"type": "string"}, media="text/plain"),)))
    def metrics() -> Response:
        """Prometheus metrics of this API."""
        if multiprocess_dir:  # under granian, every worker process writes its samples there
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=multiprocess_dir)
        else:
            registry = REGISTRY
        return Response(generate_latest(registry) + generate_latest(jobs_registry), mimetype=CONTENT_TYPE_LATEST)
