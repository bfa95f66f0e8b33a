"""A page of sweeps as listings show them: each sweep's progress and leader summed up inside Redis, once for good.

A sweep has up to 256 trials, each a job record: a listing that read them all would move every
trial's record to the API. One script per sweep reads its trials' status, progress and evaluation
where they are and answers a few numbers (its tally), and the sweep's own fields come without its
curves; a page of 100 sweeps is one round trip. A finished sweep's trials have all ended, so its
tally never changes again: it is kept in the sweep's record (field `tally`) the first time it is
summed up, and a history of finished sweeps costs a field read each.
"""

import json
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from contract.job import FINISHED
from contract.sweep_record import Ranked, SweepProgress, SweepSummary

if TYPE_CHECKING:
    from contract.sweep_store import SweepStore

# Reads only (it runs when Redis is at its maxmemory too).
TALLY = """
-- A sweep's trials summed up. KEYS: the sweep's hash. ARGV: key prefix.
-- Answers {the kept tally (JSON)} when the sweep has one; else {finished, succeeded, steps done (string), steps
-- (string), the leader's trial (-1: none), its job id, its evaluation (the record's JSON), whether a halving sweep
-- pruned it (0 or 1), the rungs it reached}; nil for no such sweep.
local kept = redis.call('HGET', KEYS[1], 'tally')
if kept then return {kept} end
local ids = redis.call('HGET', KEYS[1], 'job_ids')
if not ids then return nil end
local finished, succeeded, done, steps = 0, 0, 0, 0
local leader, lead_id, lead_eval, lead_acc, lead_loss, lead_depth = -1, '', '', 0, 0, 0
for i, id in ipairs(cjson.decode(ids)) do
  local job = redis.call('HMGET', ARGV[1] .. ':job:' .. id, 'status', 'progress', 'evaluation', 'pruned')
  if job[1] then
    local progress = job[2] and cjson.decode(job[2]) or {}
    local n = tonumber(progress.steps) or 0
    -- A halving sweep's pruned trial (its rung) is done, and ranks below every trial that went further.
    local pruned = job[4] and tonumber(job[4])
    local depth = pruned or math.huge
    steps = steps + n
    if (job[1] == '"queued"' or job[1] == '"running"') and not pruned then
      done = done + (tonumber(progress.fraction) or 0) * n
    elseif job[1] == '"queued"' or job[1] == '"running"' then
      done = done + n
    else
      finished, done = finished + 1, done + n
      if job[1] == '"succeeded"' then
        succeeded = succeeded + 1
        if job[3] and job[3] ~= 'null' then
          local ev = cjson.decode(job[3])
          local acc, loss = tonumber(ev.echo_accuracy), tonumber(ev.loss)
          -- How far it went, held-out echo accuracy, then held-out loss, then the lower trial (rank_key's order).
          if acc and loss and (leader < 0 or depth > lead_depth or (depth == lead_depth and (acc > lead_acc or
              (acc == lead_acc and loss < lead_loss)))) then
            leader, lead_id, lead_eval, lead_acc, lead_loss, lead_depth = i - 1, id, job[3], acc, loss, depth
          end
        end
      end
    end
  end
end
local lead_rung = 0
if leader >= 0 then
  local rungs = redis.call('HGET', ARGV[1] .. ':job:' .. lead_id, 'rungs')
  local decoded = rungs and cjson.decode(rungs)
  lead_rung = type(decoded) == 'table' and #decoded or 0
end
return {finished, succeeded, tostring(done), tostring(steps), leader, lead_id, lead_eval,
        (leader >= 0 and lead_depth ~= math.huge) and 1 or 0, lead_rung}
"""
# Keep a tally in a sweep's record, only while the record is there and finished (never recreate a pruned one).
KEEP = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == '"succeeded"' or status == '"failed"' or status == '"cancelled"' then
  redis.call('HSET', KEYS[1], 'tally', ARGV[1])
  return 1
end
return 0
"""
FIELDS = (
    "id",
    "name",
    "status",
    "owner",
    "created_at",
    "started_at",
    "finished_at",
    "request",
    "groups",
    "best",
    "mlflow",
    "cancel_requested",
    "error",
    "job_ids",
    "planned",
)


def summaries(store: "SweepStore", sweep_ids: list[str]) -> list[SweepSummary | None]:
    """The summaries of sweeps, in order (None for one that is gone): one round trip, and one more for the searched
    values of leaders summed up for the first time; finished sweeps' tallies are kept for next time."""
    pipe = store.redis.pipeline(transaction=False)
    for sweep_id in sweep_ids:
        pipe.hmget(store.key(sweep_id), list(FIELDS))
        store.tally_script(keys=[store.key(sweep_id)], args=[store.prefix], client=pipe)
    answers = pipe.execute()
    records = [_record(raw) for raw in answers[::2]]
    tallies: list[dict[str, Any] | None] = [
        json.loads(t[0]) if t and len(t) == 1 else _fresh(t) if t else None for t in answers[1::2]
    ]
    fresh = [
        (i, tally, record)
        for i, (t, tally, record) in enumerate(zip(answers[1::2], tallies, records))
        if t and len(t) > 1 and tally is not None and record is not None
    ]
    _leader_values(store, [(sweep_ids[i], tally) for i, tally, _ in fresh if tally["leader"]])
    _keep(store, [(sweep_ids[i], tally) for i, tally, record in fresh if record["status"] in FINISHED])
    return [_summary(r, t) if r is not None and t is not None else None for r, t in zip(records, tallies)]


def _record(raw: list[bytes | None]) -> dict[str, Any] | None:
    if raw[0] is None:
        return None
    return {name: json.loads(value) for name, value in zip(FIELDS, raw) if value is not None}


def _fresh(answer: list[Any]) -> dict[str, Any]:
    """The script's numbers as a tally; its leader without the searched values yet."""
    finished, succeeded, done, steps, leader, job_id, evaluation, pruned, rung = answer
    lead = None
    if leader >= 0:
        scores = json.loads(evaluation)
        lead = {
            "rank": 1,
            "trial": leader,
            "job_id": job_id.decode(),
            "values": {},
            "echo_accuracy": scores["echo_accuracy"],
            "loss": scores["loss"],
            "rung": rung,
            "pruned": bool(pruned),
        }
    return {
        "finished": finished,
        "succeeded": succeeded,
        "fraction": round(float(done) / (float(steps) or 1), 4),
        "leader": lead,
    }


def _leader_values(store: "SweepStore", fresh: list[tuple[str, dict[str, Any]]]) -> None:
    if not fresh:
        return
    pipe = store.redis.pipeline(transaction=False)
    for sweep_id, _ in fresh:
        pipe.hget(store.key(sweep_id), "values")
    for (_, tally), values in zip(fresh, pipe.execute()):
        tally["leader"]["values"] = json.loads(values)[tally["leader"]["trial"]] if values else {}


def _keep(store: "SweepStore", finished: list[tuple[str, dict[str, Any]]]) -> None:
    """Keep finished sweeps' tallies; a Redis that refuses the write (at its maxmemory) only costs a recount later."""
    if not finished:
        return
    pipe = store.redis.pipeline(transaction=False)
    for sweep_id, tally in finished:
        store.keep_script(keys=[store.key(sweep_id)], args=[json.dumps(tally)], client=pipe)
    with suppress(RedisError):
        pipe.execute(raise_on_error=False)


def _summary(record: dict[str, Any], tally: dict[str, Any]) -> SweepSummary:
    made = len(record.pop("job_ids"))
    planned = max(made, record.pop("planned", made))
    progress = SweepProgress(
        trials=made,
        planned=planned,
        finished=tally["finished"],
        succeeded=tally["succeeded"],
        fraction=round(tally["fraction"] * made / planned, 4),  # trials not made yet: as long as those made
    )
    group_count = len(record.pop("groups"))
    leader = Ranked(**tally["leader"]) if tally["leader"] else None
    return SweepSummary(**record, group_count=group_count, progress=progress, leader=leader)
