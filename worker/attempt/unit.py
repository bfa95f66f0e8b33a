"""What one task trains: a job (a group of one trial) or a sweep's group of trials."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Unit:
    """The jobs a delivery names, and the sweep group they make up (none for a plain job)."""

    job_ids: list[str] = field(default_factory=list)
    sweep_id: str | None = None
    group: int | None = None

    @property
    def is_job(self) -> bool:
        """Whether this is a plain job (its own run, figures, its own registered version)."""
        return self.sweep_id is None

    @property
    def sweep(self) -> tuple[str, int]:
        """A sweep group's sweep id and group number."""
        assert self.sweep_id is not None and self.group is not None, f"{self.label} is not a sweep's group"
        return self.sweep_id, self.group

    @property
    def name(self) -> str:
        """What its checkpoint is filed under."""
        return self.job_ids[0] if self.sweep_id is None else f"group:{self.sweep_id}:{self.group}"

    @property
    def label(self) -> str:
        """How log lines name it."""
        return f"job {self.job_ids[0]}" if self.sweep_id is None else f"sweep {self.sweep_id} group {self.group}"
