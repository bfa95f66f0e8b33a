"""The worker's settings, read once from the environment (no TensorFlow, no Celery)."""

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings


class WorkerSettings(BaseSettings):
    """What a worker process needs to reach the queue and MLflow."""

    redis_url: str = Field(description="Broker, result backend and job records.")
    mlflow_tracking_uri: str = Field(description="The MLflow tracking server.")
    mlflow_ui_url: str | None = Field(None, description="Public base URL of the MLflow UI; defaults to the tracking URI.")
    mlflow_experiment: str = "echo-rnn"
    registered_model: str = "echo-rnn"
    job_key_prefix: str = "echo-rnn"
    # TensorFlow gives GPU memory back only when its process exits: one job per child on a GPU.
    # On the CPU a child may keep TensorFlow loaded for the next job (0 = no limit), saving seconds per job.
    worker_max_tasks_per_child: int = Field(1, ge=0, description="Jobs a worker child runs before it is replaced.")
    max_job_seconds: int = Field(6 * 3600, ge=1, description="Server-side cap on a job's time limit.")
    max_worker_losses: int = Field(3, ge=1, description="A job whose worker is lost this often ends failed.")
    # Longer than the longest job: Redis re-delivers an unacknowledged task after this.
    visibility_timeout_s: int = 12 * 3600
    log_level: str = "INFO"
    log_flush_s: float = 2.0
    mlflow_retry_s: float = Field(
        300.0, ge=0, description="How long a job waits for an unreachable MLflow (MLFLOW_RETRY_S) before failing."
    )
    redis_retry_s: float = Field(
        600.0, ge=0,
        description="How long a job waits for an unreachable Redis (REDIS_RETRY_S) to record its start or end.",
    )
    # MLflow's client reads these itself from the environment; its defaults (7 retries, backoff
    # factor 2, 120 s timeout) make one call to a stopped server hang for minutes. The job's own
    # retries (mlflow_retry_s) do the waiting; celery_app exports these values at startup.
    mlflow_http_request_max_retries: int = Field(2, ge=0, le=10, description="MLflow client retries per HTTP request.")
    mlflow_http_request_backoff_factor: int = Field(1, ge=0, le=120, description="MLflow client backoff factor (s).")
    mlflow_http_request_timeout: int = Field(30, ge=1, description="MLflow client connect/read timeout per request (s).")

    @model_validator(mode="after")
    def _redelivery_after_the_longest_job(self) -> "WorkerSettings":
        if self.visibility_timeout_s <= self.max_job_seconds:
            raise ValueError("visibility_timeout_s must exceed max_job_seconds, or long jobs would be delivered twice")
        return self

    def mlflow_client_environment(self) -> dict[str, str]:
        """The variables through which MLflow's own client takes the HTTP settings above."""
        return {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.mlflow_http_request_max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(self.mlflow_http_request_backoff_factor),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.mlflow_http_request_timeout),
        }

    @property
    def ui_url(self) -> str:
        """Where people open runs."""
        return (self.mlflow_ui_url or self.mlflow_tracking_uri).rstrip("/")
