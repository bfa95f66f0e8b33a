"""What POST and DELETE /sweeps do to a sweep's trials: queue their groups, or cancel them."""

from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from contract import tasks
from contract.clock import now
from contract.job import FINISHED
from contract.sweep_record import Sweep
from contract.sweep_summary import summaries
from service import queueing
from service.problems import Problem, redis_down

if TYPE_CHECKING:
    from service.app import Services


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
            s.jobs.move(trial.job_id, "failed", only_from={"queued"}, finished_at=now(), error=queueing.QUEUE_DOWN)
        s.sweeps.move(sweep.id, "failed", error=queueing.QUEUE_DOWN)
        raise redis_down("the sweep was not queued") from exc


def cancel(s: "Services", sweep_id: str, job_ids: list[str]) -> tuple[Sweep, bool]:
    """Cancel every queued trial, ask every running one to stop (a round trip each, for all trials); the sweep as it
    is then, and whether some trial is still running."""
    s.sweeps.request_cancel(sweep_id)
    # A tpe search's batch made since job_ids was read has trials of its own; none is made from now on.
    job_ids = (s.sweeps.head(sweep_id) or {}).get("job_ids") or job_ids
    cancelled = s.jobs.cancel_queued(job_ids, finished_at=now())
    # A trial not queued any more runs (or has ended, and the flag changes nothing): ask it to stop.
    s.jobs.request_cancel_many([job_id for job_id, done in zip(job_ids, cancelled) if not done])
    # A sweep that never started ends here, its groups out of their queue; a started one is ended by its
    # last group, which closes its parent run and registers nothing once it was cancelled (its groups
    # still waiting are sent in their turn, and skipped and counted by the worker that takes them).
    after = s.sweeps.get(sweep_id)
    if after is None:  # its retention ended meanwhile: nothing of it is left
        raise Problem(404, "Unknown sweep", f"no sweep {sweep_id}")
    stamp = now()
    if all(t.status in FINISHED for t in after.trials) and s.sweeps.move(
        sweep_id, "cancelled", only_from={"queued"}, finished_at=stamp
    ):
        for g in range(len(after.groups)):
            queueing.withdraw(s, tasks.group_name(sweep_id, g))
        summaries(s.sweeps, [sweep_id])  # its tally kept now: listings read it as one field
        return after.model_copy(update={"status": "cancelled", "finished_at": stamp}), False
    return after, after.status not in FINISHED
