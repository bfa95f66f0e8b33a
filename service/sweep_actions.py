"""What POST and DELETE /sweeps do to a sweep's trials: queue their groups, or cancel them."""

from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from contract import tasks
from contract.clock import now
from contract.job import FINISHED
from contract.sweep_record import Sweep
from service import queueing
from service.problems import Problem

if TYPE_CHECKING:
    from service.app import Services

QUEUE_DOWN = "the queue was unavailable"


def enqueue(s: "Services", sweep: Sweep) -> None:
    """Queue one group task per group, all at once; if Redis refuses them, fail every trial and the sweep (a 503)."""
    job_of = {t.trial: t.job_id for t in sweep.trials}
    units = []
    for g, members in enumerate(sweep.groups):
        job_ids = [job_of[t] for t in members]
        units.append((tasks.train_group(sweep.id, g, job_ids), job_ids))
    try:
        queueing.queue(s, sweep.owner, units)
    except RedisError as exc:
        for trial in sweep.trials:
            s.jobs.move(trial.job_id, "failed", only_from={"queued"}, finished_at=now(), error=QUEUE_DOWN)
        s.sweeps.move(sweep.id, "failed", error=QUEUE_DOWN)
        raise Problem(
            503, "Service Unavailable", "the queue (Redis) is not answering; the sweep was not queued"
        ) from exc


def cancel(s: "Services", sweep: Sweep) -> bool:
    """Cancel every queued trial, ask every running one to stop; whether some trial is still running."""
    s.sweeps.request_cancel(sweep.id)
    for trial in sweep.trials:
        if trial.status in FINISHED:
            continue
        # A trial that started since it was read is not queued any more: ask it to stop instead.
        if not s.jobs.move(trial.job_id, "cancelled", only_from={"queued"}, finished_at=now()):
            s.jobs.request_cancel(trial.job_id)
    # A sweep that never started ends here, its groups out of their queue; a started one is ended by its
    # last group, which closes its parent run and registers nothing once it was cancelled (its groups
    # still waiting are sent in their turn, and skipped and counted by the worker that takes them).
    after = s.sweeps.get(sweep.id)
    if after is None:  # pruned meanwhile: nothing of it is left running
        return False
    if all(t.status in FINISHED for t in after.trials) and s.sweeps.move(sweep.id, "cancelled", only_from={"queued"}):
        for g in range(len(sweep.groups)):
            queueing.withdraw(s, tasks.group_name(sweep.id, g))
        return False
    return after.status not in FINISHED
