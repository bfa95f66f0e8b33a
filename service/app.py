"""The Flask application factory: each call builds an app from the settings it is given."""

import logging

import redis
from celery import Celery
from flask import Flask
from mlflow.tracking import MlflowClient
from redis.exceptions import RedisError

from contract.dispatch import Dispatch
from contract.job_store import JobStore
from contract.sweep_store import SweepStore
from service import auth, idempotency, jsonio, limits, metrics, problems
from service.fast_predict import FastPredict
from service.idempotency import IdempotencyStore
from service.load_limit import LoadLimit
from service.model_cache import ModelCache
from service.model_resolver import ModelResolver
from service.record_budget import RecordBudget
from service.routes import docs, health, jobs, models, predict, sweeps
from service.settings import Settings

log = logging.getLogger(__name__)


class Services:
    """What the routes talk to, built once per app."""

    def __init__(self, settings: Settings):
        self.settings = settings
        settings.configure_mlflow_client()
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.jobs = JobStore(self.redis, settings.job_key_prefix, settings.job_retention_s)
        self.sweeps = SweepStore(self.jobs)
        self.dispatch = Dispatch(self.redis, settings.job_key_prefix)  # the pending queues, per token
        # The API only enqueues by task name: it never imports the worker's tasks or TensorFlow.
        self.celery = Celery("echo_rnn_api", broker=settings.redis_url, set_as_current=False)
        self.celery.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
        self.mlflow = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
        resolver = ModelResolver(
            self.mlflow, self.jobs, settings.registered_model, settings.alias_ttl_s, settings.champion_alias
        )
        self.models = ModelCache(
            self.mlflow,
            self.redis,
            settings.job_key_prefix,
            resolver,
            settings.model_cache_size,
            settings.serving_threads,
        )
        self.load_limit = LoadLimit(
            self.redis, settings.redis_url, settings.job_key_prefix, settings.model_loads_per_client
        )
        self.idempotency = IdempotencyStore(self.redis, settings.job_key_prefix, settings.idempotency_ttl_s)
        self.records = RecordBudget(self.redis, settings.job_key_prefix, settings.max_records_per_hour)
        try:  # records from before the per-owner status index; else the first listing that needs it builds it
            self.jobs.build_owner_index()
        except RedisError:
            log.warning("Redis does not answer: the per-owner status index is checked at the first listing instead")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API; without settings, they are read from the environment."""
    settings = settings or Settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    jsonio.install(app)
    app.extensions["echo"] = Services(settings)
    problems.register(app)
    for blueprint in (health.bp, jobs.bp, sweeps.bp, predict.bp, models.bp, docs.bp):
        app.register_blueprint(blueprint)
    metrics.instrument(app, app.extensions["echo"].jobs, settings.prometheus_multiproc_dir)
    idempotency.install(app)
    auth.install(app, settings)  # before the limiter: a request without a valid token costs no budget
    limits.install(app, settings, app.extensions["echo"].redis)  # reads the declarations of the views above
    # GET /predict's common case, before Flask: a WSGI middleware, installed as Flask's documentation does it.
    app.wsgi_app = FastPredict(app.wsgi_app, app.extensions["echo"])  # type: ignore[method-assign]
    return app
