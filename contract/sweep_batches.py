"""A tpe search's batches after the first: asked from the earlier trials' scores, then its trials, groups and
their places in the owner's queue written in one fenced Redis step.

A tpe sweep is made a batch at a time. Its record counts the batches made and the trials planned; whoever
would end the sweep once all its trials have (the attempt that ends its last group, the reconciler's finish
task) holds the sweep's finish lease and calls add_batch instead while trials are left to make. The step
watches that lease and the sweep's record: a finisher whose lease lapsed writes nothing, a batch is made once
(its number must be the record's), and none is made once a cancel was asked for or the sweep has ended.
"""

import json
import logging
from typing import Any

from redis.client import Pipeline
from redis.exceptions import WatchError

from contract import tasks
from contract.dispatch import Dispatch
from contract.fence import Fence, LeaseLost
from contract.job import FINISHED
from contract.job_store import encode
from contract.params import TrainingParams
from contract.redis_values import hash_fields
from contract.sweep import SweepRequest, group
from contract.sweep_record import Sweep, Trial
from contract.sweep_store import SweepStore

log = logging.getLogger(__name__)
DEFAULT_GROUP_SIZE = 32  # the API's SWEEP_GROUP_SIZE, for a record that does not say its own


def pending(record: dict[str, Any]) -> bool:
    """Whether the sweep is a tpe search with trials left to make."""
    return int(record.get("planned", 0)) > len(record["job_ids"])


def score(trial: Trial) -> float | None:
    """What Optuna is told of a trial: its held-out loss (to 6 significant digits: the same scores ask the same
    trials whatever their last bits), None unless it succeeded."""
    if trial.status != "succeeded" or trial.evaluation is None:
        return None
    return float(f"{trial.evaluation.loss:.6g}")


def add_batch(sweeps: SweepStore, fence: Fence, sweep: Sweep, record: dict[str, Any]) -> bool:
    """Ask the sweep's next batch and write it with its groups queued; False when it was cancelled, ended or had
    this batch made meanwhile (nothing written); LeaseLost once the fence's lease is not held."""
    request = SweepRequest.model_validate(record["request"])
    number, made = int(record["batches"]), len(record["job_ids"])
    assert request.random is not None, "a tpe sweep is a random search"
    values = request.random.draw(number, [(t.values, score(t)) for t in sweep.trials])
    trials = request.trials(values)
    size = int(record.get("group_size") or DEFAULT_GROUP_SIZE)
    groups = [[made + i for i in members] for members in group(trials, size)]
    key = sweeps.key(sweep.id)
    while True:
        with sweeps.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(*fence.leases, key)
                _check_fence(pipe, fence)
                batches, status, cancel = (json.loads(v) if v else None for v in pipe.hmget(key, *_GUARD))
                if batches != number or status in FINISHED or status is None or cancel:
                    log.info("sweep %s: batch %d not made (%s, cancel asked: %s)", sweep.id, number, status, cancel)
                    return False
                pipe.multi()
                _write(sweeps, pipe, sweep.id, record, trials, values, groups)
                pipe.execute()
            except WatchError:  # the lease renewed, a cancel asked for, the record written: look again
                continue
        log.info(
            "sweep %s: batch %d (%d trials, %d groups) asked and queued", sweep.id, number, len(trials), len(groups)
        )
        return True


_GUARD = ("batches", "status", "cancel_requested")


def _check_fence(pipe: Pipeline, fence: Fence) -> None:
    for lease in fence.leases:
        held = pipe.get(lease)
        if held is None or (held.decode() if isinstance(held, bytes) else held) != fence.token:
            raise LeaseLost(f"{lease} is no longer held by this attempt")


def _write(
    sweeps: SweepStore,
    pipe: Pipeline,
    sweep_id: str,
    record: dict[str, Any],
    trials: list[TrainingParams],
    values: list[dict[str, Any]],
    groups: list[list[int]],
) -> None:
    """Queue the batch's writes in the transaction: its trials' jobs, the sweep's fields, its groups' places."""
    made, groups_made, owner = len(record["job_ids"]), len(record["groups"]), record.get("owner")
    job_ids = [j.id for j in sweeps.create_trials(pipe, sweep_id, trials, groups, owner, made, groups_made)]
    fields = {
        "job_ids": [*record["job_ids"], *job_ids],
        "values": [*record["values"], *values],
        "groups": [*record["groups"], *groups],
        "batches": int(record["batches"]) + 1,
    }
    pipe.hset(sweeps.key(sweep_id), mapping=hash_fields(encode(fields)))
    # Added, not set: a group of the last batch whose trials were all cancelled may not have been counted yet.
    pipe.hincrby(sweeps.key(sweep_id), "groups_left", len(groups))
    units = []
    for g, members in enumerate(groups):
        covered = [job_ids[t - made] for t in members]
        units.append((tasks.train_group(sweep_id, groups_made + g, covered), covered))
    Dispatch(sweeps.redis, sweeps.prefix).enqueue(owner, units, transaction=pipe)
