"""The deployment rendered once per test session, as make manifests renders it, and compose's model
it is compared with."""

import pytest

from tests.deploy.manifests import Object, render
from tests.docker.parsing import (
    COMPOSE,
    COMPOSE_CPU,
    COMPOSE_GPU,
    ENV_EXAMPLE,
    interpolate,
    load_compose,
    merge,
    read_env_file,
)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, list[Object]]:
    """variant: its objects (make manifests into a folder of the session's own)."""
    return render(tmp_path_factory.mktemp("manifests"))


@pytest.fixture(scope="session")
def compose() -> dict[str, dict]:
    """variant: compose.yaml with its variant's file, as docker compose reads them with .env.example."""
    env_file = read_env_file(ENV_EXAMPLE)
    base = interpolate(load_compose(COMPOSE), env_file)
    return {
        "cpu": merge(base, interpolate(load_compose(COMPOSE_CPU), env_file)),
        "gpu": merge(base, interpolate(load_compose(COMPOSE_GPU), env_file)),
    }
