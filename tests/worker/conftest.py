"""Fixtures of the worker's unit tests: the stack's MLflow server, a closed port, a model that echoes."""

import socket
import uuid
from collections.abc import Callable, Iterator

import mlflow
import pytest
import redis
from mlflow.tracking import MlflowClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from contract.params import TrainingParams
from tests.support import free_port
from worker.settings import WorkerSettings

# The engine tests' TRAINED job: five epochs, a seed that leaves the ln 2 plateau early; it echoes.
ECHOING = TrainingParams(num_epochs=5, seed=2)


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on: connections to it are refused."""
    return free_port()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: reads on it time out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.fixture
def bare_redis() -> Callable[..., redis.Redis]:
    """Clients without redis-py's own retries (4 s on a closed port), so a failure is one failure."""

    def make(port: int, **options) -> redis.Redis:
        return redis.Redis(port=port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1, **options)

    return make


@pytest.fixture
def fail_fast_mlflow(monkeypatch) -> None:
    """MLflow's client without its own HTTP retries (minutes against a stopped server by default)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@pytest.fixture(scope="session")
def mlflow_url(stack) -> str:
    """The stack's tracking server (shared with the rest of the suite)."""
    return stack.mlflow


@pytest.fixture(scope="session")
def experiment() -> str:
    """An experiment of this session's worker tests, apart from the service's own."""
    return f"worker-tests-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(redis_server, mlflow_url, experiment) -> WorkerSettings:
    """A worker's settings against the real servers, with short flush and retry times."""
    return WorkerSettings(
        redis_url=redis_server.url,
        mlflow_tracking_uri=mlflow_url,
        mlflow_experiment=experiment,
        log_flush_s=0.05,
        mlflow_retry_s=10,
    )


@pytest.fixture
def client(mlflow_url) -> MlflowClient:
    """A client of the stack's tracking server."""
    return MlflowClient(tracking_uri=mlflow_url)


@pytest.fixture
def run_id(client, experiment) -> str:
    """A fresh run in the session's experiment."""
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    return client.create_run(experiment_id).info.run_id


@pytest.fixture(scope="session")
def echoing():
    """A TrainingResult whose network echoes (about 2 s of training on the CPU)."""
    from worker.engine.train import train_model

    return train_model(ECHOING)


@pytest.fixture
def global_tracking_uri(client) -> Iterator[None]:
    """MLflow's global tracking URI (what pyfunc.load_model of a models:/ URI reads) at the test's server, then back."""
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    yield
    mlflow.set_tracking_uri(before)
