"""The API's settings: one typed object, read from the environment once, failing early."""

from pydantic import Field
from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    """What the API process needs; tests build one directly."""

    redis_url: str = Field(description="Broker and job records.")
    mlflow_tracking_uri: str = Field(description="The MLflow tracking server.")
    mlflow_ui_url: str | None = Field(None, description="Public base URL of the MLflow UI.")
    registered_model: str = "echo-rnn"
    job_key_prefix: str = "echo-rnn"
    model_cache_size: int = Field(8, ge=1, description="Models kept loaded per API process.")
    alias_ttl_s: float = Field(5.0, ge=0, description="How long a resolved alias or 'latest' is trusted.")
    prometheus_multiproc_dir: str | None = Field(None, description="Set under gunicorn: metrics of all workers.")
    log_level: str = "INFO"
    max_body_bytes: int = 1024 * 1024
    max_sequence_bits: int = 100_000
    max_sequences: int = 1_000
