"""A fresh API app per test, bound to the suite's Redis and the stack's MLflow server."""

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.settings import Settings


@pytest.fixture
def settings(redis_server, stack) -> Settings:
    """Settings of a test app: real Redis, real MLflow."""
    return Settings(redis_url=redis_server.url, mlflow_tracking_uri=stack.mlflow, model_cache_size=2, alias_ttl_s=0.5)


@pytest.fixture
def client(settings) -> FlaskClient:
    """A test client of an app built from the settings."""
    return create_app(settings).test_client()
