"""The worker's settings, read once from the environment (no TensorFlow, no Celery)."""

from pydantic import Field
from pydantic_settings import BaseSettings


class WorkerSettings(BaseSettings):
    """What a worker process needs to reach the queue and MLflow."""

    redis_url: str = Field(description="Broker, result backend and job records.")
    mlflow_tracking_uri: str = Field(description="The MLflow tracking server.")
    mlflow_ui_url: str | None = Field(None, description="Public base URL of the MLflow UI; defaults to the tracking URI.")
    mlflow_experiment: str = "echo-rnn"
    registered_model: str = "echo-rnn"
    job_key_prefix: str = "echo-rnn"
    # Longer than the longest job: Redis re-delivers an unacknowledged task after this.
    visibility_timeout_s: int = 12 * 3600
    log_level: str = "INFO"
    log_flush_s: float = 2.0
    mlflow_retry_s: float = Field(300.0, description="How long a job waits for an unreachable MLflow before failing.")

    @property
    def ui_url(self) -> str:
        """Where people open runs."""
        return (self.mlflow_ui_url or self.mlflow_tracking_uri).rstrip("/")
