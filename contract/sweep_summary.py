"""A page of sweeps as listings show them: each sweep's progress and leader summed up inside Redis.

A sweep has up to 256 trials, each a job record: a listing that read them all would move every
trial's record to the API. One script per sweep reads its trials' status, progress and evaluation
where they are and answers a few numbers, and the sweep's own fields come without its curves; a
page of 100 sweeps is one round trip.
"""

import json
from typing import TYPE_CHECKING, Any

from contract.sweep_record import Ranked, SweepProgress, SweepSummary

if TYPE_CHECKING:
    from contract.sweep_store import SweepStore

# Reads only: it runs when Redis is at its maxmemory too.
SUMMARY = """
-- A sweep's trials summed up. KEYS: the sweep's hash. ARGV: key prefix.
-- Answers {finished, succeeded, steps done (string), steps (string), the leader's trial (-1: none),
-- its job id, its evaluation (the record's JSON)}, or nil when there is no such sweep.
local ids = redis.call('HGET', KEYS[1], 'job_ids')
if not ids then return nil end
local finished, succeeded, done, steps = 0, 0, 0, 0
local leader, lead_id, lead_eval, lead_acc, lead_loss = -1, '', '', 0, 0
for i, id in ipairs(cjson.decode(ids)) do
  local job = redis.call('HMGET', ARGV[1] .. ':job:' .. id, 'status', 'progress', 'evaluation')
  if job[1] then
    local progress = job[2] and cjson.decode(job[2]) or {}
    local n = tonumber(progress.steps) or 0
    steps = steps + n
    if job[1] == '"queued"' or job[1] == '"running"' then
      done = done + (tonumber(progress.fraction) or 0) * n
    else
      finished, done = finished + 1, done + n
      if job[1] == '"succeeded"' then
        succeeded = succeeded + 1
        if job[3] and job[3] ~= 'null' then
          local ev = cjson.decode(job[3])
          local acc, loss = tonumber(ev.echo_accuracy), tonumber(ev.loss)
          -- Held-out echo accuracy first, then held-out loss, then the lower trial (the leaderboard's order).
          if acc and loss and (leader < 0 or acc > lead_acc or (acc == lead_acc and loss < lead_loss)) then
            leader, lead_id, lead_eval, lead_acc, lead_loss = i - 1, id, job[3], acc, loss
          end
        end
      end
    end
  end
end
return {finished, succeeded, tostring(done), tostring(steps), leader, lead_id, lead_eval}
"""
FIELDS = ("id", "name", "status", "owner", "created_at", "started_at", "finished_at", "request", "groups", "best",
          "mlflow", "cancel_requested", "error", "job_ids")


def summaries(store: "SweepStore", sweep_ids: list[str]) -> list[SweepSummary | None]:
    """The summaries of sweeps, in order, in one round trip (None for one that is gone)."""
    pipe = store.redis.pipeline(transaction=False)
    for sweep_id in sweep_ids:
        pipe.hmget(store.key(sweep_id), ["values", *FIELDS])
        store.summary_script(keys=[store.key(sweep_id)], args=[store.prefix], client=pipe)
    answers = pipe.execute()
    return [_summary(fields, counts) for fields, counts in zip(answers[::2], answers[1::2])]


def _summary(raw: list[bytes | None], counts: list[Any] | None) -> SweepSummary | None:
    if raw[1] is None or counts is None:
        return None
    values, *fields = raw
    record = {name: json.loads(value) for name, value in zip(FIELDS, fields) if value is not None}
    finished, succeeded, done, steps, leader, job_id, evaluation = counts
    progress = SweepProgress(trials=len(record.pop("job_ids")), finished=finished, succeeded=succeeded,
                             fraction=round(float(done) / (float(steps) or 1), 4))
    group_count = len(record.pop("groups"))
    lead = None
    if leader >= 0:
        scores = json.loads(evaluation)
        lead = Ranked(rank=1, trial=leader, job_id=job_id.decode(), values=json.loads(values)[leader],
                      echo_accuracy=scores["echo_accuracy"], loss=scores["loss"])
    return SweepSummary(**record, group_count=group_count, progress=progress, leader=lead)
