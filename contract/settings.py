"""What every process's settings share: where Redis and MLflow are, and how MLflow's client behaves."""

import os

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.job_store import DEFAULT_PREFIX, DEFAULT_RETENTION_S


class CommonSettings(BaseSettings):
    """Read once from the environment; a missing required value fails at start."""

    # A bad value is never repeated in the error (it may be a token or a URL with a password).
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    redis_url: str = Field(description="Redis: the queue, the job records and the rate limits.")
    mlflow_tracking_uri: str = Field(description="The MLflow tracking server.")
    mlflow_ui_url: str | None = Field(
        None, description="Public base URL of the MLflow UI (run links); defaults to the tracking URI."
    )
    registered_model: str = Field("echo-rnn", description="The registered model each job adds a version to.")
    champion_alias: str = Field("champion", description="The registered model's alias GET /predict serves by default.")
    job_key_prefix: str = Field(DEFAULT_PREFIX, description="Prefix of every Redis key of the service.")
    log_level: str = Field("INFO", description="Level of the JSON log lines.")
    job_retention_s: int = Field(
        DEFAULT_RETENTION_S, ge=60, description="How long a finished job's record is kept in Redis (s)."
    )
    # MLflow's client takes these from the environment only; its defaults (7 retries, 120 s timeout)
    # hold a call to a stopped server for minutes. Subclasses choose their own defaults.
    mlflow_http_request_max_retries: int = Field(2, ge=0, le=10, description="MLflow client retries per HTTP request.")
    mlflow_http_request_backoff_factor: int = Field(1, ge=0, le=120, description="MLflow client backoff factor (s).")
    mlflow_http_request_timeout: int = Field(
        30, ge=1, description="MLflow client connect/read timeout per request (s)."
    )

    @property
    def ui_url(self) -> str:
        """Where people open runs."""
        return (self.mlflow_ui_url or self.mlflow_tracking_uri).rstrip("/")

    def mlflow_client_environment(self) -> dict[str, str]:
        """The variables through which MLflow's own client takes the HTTP settings above."""
        return {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.mlflow_http_request_max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(self.mlflow_http_request_backoff_factor),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.mlflow_http_request_timeout),
            # With tqdm installed (Optuna brings it) MLflow draws a progress bar per download: not a JSON log line.
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }

    def configure_mlflow_client(self) -> None:
        """Hand the MLflow client settings to MLflow, which reads them only from the environment.

        Called by a process's entry point at start (the worker's init, the API's factory), never at import.
        """
        os.environ.update(self.mlflow_client_environment())
