"""The worker's settings, read once from the environment (no TensorFlow, no Celery)."""

from pydantic import Field, model_validator

from contract.settings import CommonSettings

LOST_AFTER = 0.8  # of the lease's TTL without a renewal, an attempt counts its leases lost


class WorkerSettings(CommonSettings):
    """What a worker process needs to reach the queue and MLflow, and the bounds of its jobs."""

    mlflow_experiment: str = Field("echo-rnn", description="The MLflow experiment that holds the jobs' runs.")
    # TensorFlow gives GPU memory back only when its process exits: one job per child on a GPU.
    # On the CPU a child may keep TensorFlow loaded for the next job (0 = no limit), saving seconds per job.
    worker_max_tasks_per_child: int = Field(
        1, ge=0, description="Jobs a worker child runs before it is replaced (0: no limit)."
    )
    max_job_seconds: int = Field(6 * 3600, ge=1, description="Server-side cap on a job's time limit.")
    max_worker_losses: int = Field(3, ge=1, description="A job whose worker is lost this often ends failed.")
    # Longer than the longest job: Redis re-delivers an unacknowledged task after this.
    visibility_timeout_s: int = Field(12 * 3600, description="Seconds before Redis re-delivers an unacknowledged task.")
    log_flush_s: float = Field(2.0, gt=0, description="Seconds between batches of metric points sent to MLflow.")
    mlflow_retry_s: float = Field(
        300.0, ge=0, description="How long a job waits for an unreachable MLflow before failing."
    )
    redis_retry_s: float = Field(
        600.0, ge=0, description="How long a job waits for an unreachable Redis to record its start or end."
    )

    loss_points_max: int = Field(
        2000,
        ge=10,
        description="Most points of a run's loss chart in MLflow: past it, each point is the mean of a bucket of steps.",
    )
    trial_loss_points_max: int = Field(
        200, ge=10, description="The same for each trial of a sweep (every step is in its loss_history.csv.gz)."
    )
    champion_min_accuracy: float = Field(
        0.99,
        ge=0,
        le=1,
        description="Held-out echo accuracy a version needs to become champion (and no lower than the champion's).",
    )
    lease_ttl_s: float = Field(
        30.0, ge=5, le=30, description="A running job's lease lapses this long after its worker stops renewing it (s)."
    )
    watchdog_interval_s: float = Field(
        10.0, gt=0, le=30, description="How often a worker looks for jobs whose lease lapsed, to take them over (s)."
    )
    reconcile_after_s: float = Field(
        300.0,
        ge=1,
        description="A queued job or group sent to the broker this long ago that no lease holds is sent "
        "again (its message may be lost), one this old in no queue is queued; a sweep whose "
        "trials all ended is finished again this often (s).",
    )

    def mlflow_client_environment(self) -> dict[str, str]:
        """MLflow's HTTP settings, bounded by the lease: a request an attempt sends while it holds its leases lands
        (or is abandoned) before they can lapse and another attempt take its run over.

        An attempt sends only within 0.8 of the TTL of its last renewal, so a request may take at most the
        remaining 0.2; MLflow's own retries (which no lease check guards) are off: the attempt's Outage retries.
        """
        bound = max(1, int(self.lease_ttl_s * (1 - LOST_AFTER) + 1e-6))
        return {
            **super().mlflow_client_environment(),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(min(self.mlflow_http_request_timeout, bound)),
            # Closing a run would read it back only to print its link (a request per run, two lines a run).
            "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        }

    @model_validator(mode="after")
    def _redelivery_after_the_longest_job(self) -> "WorkerSettings":
        if self.visibility_timeout_s <= self.max_job_seconds:
            raise ValueError("visibility_timeout_s must exceed max_job_seconds, or long jobs would be delivered twice")
        return self
