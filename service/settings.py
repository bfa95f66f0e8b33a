"""The API's settings: one typed object, read from the environment once, failing early."""

import json
import re
from typing import Annotated, Any

from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from contract.settings import CommonSettings
from contract.sweep import MAX_TRIALS
from service.schemas import MAX_SEQUENCE_BITS, MAX_SEQUENCES

# RFC 6750's b64token: what may follow "Bearer " in an Authorization header.
TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MIN_TOKEN_CHARS = 32
GENERATE = """python -c "import secrets; print(secrets.token_urlsafe(32))\""""


class Settings(CommonSettings):
    """What the API process needs; tests build one directly."""

    model_cache_size: int = Field(
        8, ge=1, description="Models kept loaded per API process (the champion is never evicted)."
    )
    model_loads_per_client: str = Field(
        "20/minute",
        description="Loads of versions an API process does not hold yet that one client may cause, "
        "counted across processes; past it a 429. Empty: no limit.",
    )
    serving_threads: int = Field(
        1, ge=1, le=64, description="ONNX Runtime threads per loaded model (one API process per core)."
    )
    alias_ttl_s: float = Field(5.0, ge=0, description="How long a resolved alias (the champion too) is trusted (s).")
    prometheus_multiproc_dir: str | None = Field(
        None, description="Where every API process writes its metric samples (set by docker/bin/api)."
    )
    # A request waiting on a stopped MLflow should get its 503 soon, not after the worker's patience.
    mlflow_http_request_max_retries: int = Field(1, ge=0, le=10, description="MLflow client retries per HTTP request.")
    mlflow_http_request_timeout: int = Field(
        20, ge=1, description="MLflow client connect/read timeout per request (s)."
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body (bytes); larger ones get a 413."
    )
    max_sequence_bits: int = Field(MAX_SEQUENCE_BITS, ge=1, description="Longest sequence /predict takes (bits).")
    max_sequences: int = Field(MAX_SEQUENCES, ge=1, description="Most sequences in one POST /predict.")
    # Who may do what (docs/tokens-and-limits.md).
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens (API_TOKENS: comma-separated or a JSON list); none: no token is asked for.",
    )
    api_admin_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Admin bearer tokens (API_ADMIN_TOKENS, as API_TOKENS): they see and cancel every client's jobs.",
    )
    max_active_jobs_per_token: int = Field(
        10, ge=1, description="Jobs one token may have queued or running at once; the next submission is a 429."
    )
    predict_budget: int = Field(
        2**26,
        ge=1024,
        description="Most work one /predict request may ask for, in padded cells × state size; "
        "past it the answer is a 413 before anything is allocated.",
    )
    predict_requires_token: bool = Field(False, description="With tokens: /predict and /models need one too.")
    rate_limit_jobs: str = Field(
        "120/minute", description="Jobs one client may submit (accepted ones count); empty: no limit."
    )
    rate_limit_predict: str = Field(
        "3000/minute", description="Requests to /predict (GET and POST together) per client; empty: no limit."
    )
    idempotency_ttl_s: int = Field(
        24 * 3600, ge=60, description="How long an Idempotency-Key of POST /jobs or POST /sweeps is kept."
    )
    max_sweep_trials: int = Field(
        MAX_TRIALS,
        ge=1,
        le=MAX_TRIALS,
        description=f"Most trials one POST /sweeps may make (at most {MAX_TRIALS}); a larger grid or search is a 422.",
    )
    max_active_sweeps_per_token: int = Field(
        2,
        ge=1,
        description="Sweeps one token may have queued or running at once (their trials do not count "
        "towards MAX_ACTIVE_JOBS_PER_TOKEN); the next is a 429.",
    )
    max_records_per_hour: int = Field(
        4096,
        ge=0,
        description="Jobs and sweep trials one client (its token, else its address) may create in any hour, "
        "counted when made whatever happens to them after (a DELETE gives none back); past it "
        "a 429. At least MAX_SWEEP_TRIALS; 0: no budget.",
    )
    rate_limit_models: str = Field(
        "300/minute", description="Requests to GET /models (a page each) per client; empty: no limit."
    )
    redis_memory_warn_fraction: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Share of Redis's maxmemory past which /readyz answers degraded (still 200); "
        "at maxmemory itself Redis refuses writes and /readyz answers 503.",
    )
    sweep_group_size: int = Field(
        32, ge=1, le=256, description="Most trials of the same shapes a worker trains together, as one task."
    )

    def mlflow_client_environment(self) -> dict[str, str]:
        """The MLflow client settings, and no pickle deserialization in the API: a second wall behind model_trust."""
        return {**super().mlflow_client_environment(), "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}

    @property
    def tokens_on(self) -> bool:
        """Whether the API asks for tokens."""
        return bool(self.api_tokens or self.api_admin_tokens)

    @field_validator("api_tokens", "api_admin_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> list[str]:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if not isinstance(value, list):
            raise ValueError("a comma-separated list of tokens or a JSON list")
        tokens = [(v.get_secret_value() if isinstance(v, SecretStr) else str(v)).strip() for v in value]
        tokens = [t for t in tokens if t]
        # The messages never repeat a token: settings errors get logged.
        for number, token in enumerate(tokens, 1):
            if not TOKEN.fullmatch(token):
                raise ValueError(
                    f"token {number} has characters a bearer token cannot carry "
                    f"(letters, digits and -._~+/ only); generate one with {GENERATE}"
                )
            if len(token) < MIN_TOKEN_CHARS:
                raise ValueError(
                    f"token {number} is shorter than {MIN_TOKEN_CHARS} characters; generate one with {GENERATE}"
                )
        return tokens

    @model_validator(mode="after")
    def _budget_takes_a_sweep(self) -> "Settings":
        if self.max_records_per_hour and self.max_records_per_hour < self.max_sweep_trials:
            raise ValueError(
                f"MAX_RECORDS_PER_HOUR ({self.max_records_per_hour}) must be 0 or at least MAX_SWEEP_TRIALS "
                f"({self.max_sweep_trials}): a largest sweep would never fit"
            )
        return self

    @field_validator("rate_limit_jobs", "rate_limit_predict", "rate_limit_models", "model_loads_per_client")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                parse_many(value)
            except ValueError as exc:
                raise ValueError(f"not a rate limit like '30/minute' or '5/second;100/hour': {value!r}") from exc
        return value
