"""Claiming a delivered sweep group: each of its trials' jobs, with a lease each, or none if another process runs it."""

import logging
from dataclasses import dataclass, field

from contract.job_store import JobStore
from worker.job_claim import claim
from worker.lease import LeaseKeeper
from worker.retry import Outage

log = logging.getLogger(__name__)


@dataclass
class GroupClaim:
    """The trials this delivery runs (in group order), and whether any of them resumes a lost worker's run."""

    job_ids: list[str] = field(default_factory=list)
    keepers: list[LeaseKeeper] = field(default_factory=list)
    resumed: bool = False
    attempts: int = 0
    duplicate: bool = False

    def check(self) -> None:
        """Raise LeaseLost if the lease of any trial is lost."""
        for keeper in self.keepers:
            keeper.check()

    def stop(self, release: bool) -> None:
        """Stop renewing every lease; release them (the group has ended here) or let them lapse."""
        for keeper in self.keepers:
            keeper.stop(release)


def claim_group(store: JobStore, job_ids: list[str], ttl_s: float, redis_retry: Outage) -> GroupClaim:
    """Claim every trial still to run; a trial under another process's live lease means the group runs there."""
    taken = GroupClaim()
    for job_id in job_ids:
        claimed = claim(store, job_id, ttl_s, redis_retry)
        if claimed.outcome == "duplicate":
            log.warning("group of job %s runs elsewhere: dropping this delivery", job_id)
            taken.stop(release=False)  # those taken lapse; the process running the group renews its own
            return GroupClaim(duplicate=True)
        if claimed.lease is None:
            continue  # finished (a trial cancelled while queued): nothing to train
        taken.job_ids.append(job_id)
        taken.keepers.append(LeaseKeeper(store.redis, store.lease_key(job_id), claimed.lease).start())
        taken.resumed |= claimed.outcome == "resumed"
        taken.attempts = max(taken.attempts, claimed.attempts)
    return taken

