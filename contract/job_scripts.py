"""The Lua scripts behind JobStore: each status change and guarded update is one atomic step in Redis."""

MOVE = """
-- Move a job to a new status if it is in one of the allowed ones, keeping the indexes and counts
-- (every job by status, and its owner's by status: <prefix>:owner:<owner>:status:<status>).
-- KEYS: the job's hash, its lease key ('' for none). ARGV: fields (JSON of JSON-encoded values),
-- key prefix, job id, new status, 1 if the new status is final, retention (s), now (s),
-- lease owner, lease ttl (ms), then the allowed statuses.
-- Answers {1, old status} when moved, {0, old status} when not allowed, {2, old status} when the
-- lease is held by another owner, nil when there is no such job.
local raw = redis.call('HGET', KEYS[1], 'status')
if not raw then return nil end
local old = cjson.decode(raw)
local allowed = false
for i = 10, #ARGV do if ARGV[i] == old then allowed = true end end
if not allowed then return {0, raw} end
if KEYS[2] ~= '' and not redis.call('SET', KEYS[2], ARGV[8], 'NX', 'PX', ARGV[9]) then return {2, raw} end
local prefix, id, new = ARGV[2], ARGV[3], ARGV[4]
for k, v in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], k, v) end
if new ~= old then
  local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
  redis.call('ZREM', prefix .. ':status:' .. old, id)
  redis.call('ZADD', prefix .. ':status:' .. new, seq, id)
  redis.call('HINCRBY', prefix .. ':counts', old, -1)
  redis.call('HINCRBY', prefix .. ':counts', new, 1)
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner and owner ~= 'null' then
    local mine = prefix .. ':owner:' .. cjson.decode(owner) .. ':status:'
    redis.call('ZREM', mine .. old, id)
    redis.call('ZADD', mine .. new, seq, id)
  end
end
if ARGV[5] == '1' then
  redis.call('ZADD', prefix .. ':finished', tonumber(ARGV[7]), id)
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner and owner ~= 'null' then redis.call('SREM', prefix .. ':active:' .. cjson.decode(owner), id) end
  -- A safety net only: prune() removes finished jobs at their retention, with their index entries.
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]) + 86400)
end
return {1, raw}
"""

SET_IF = """
-- Set fields of a job when its status is one of the allowed ones and a condition holds.
-- KEYS: the job's hash. ARGV: fields (JSON of JSON-encoded values), a field that must not hold
-- the JSON value given next ('' for no such condition), that value, then the allowed statuses.
-- Answers 1 when set, 0 when not, nil when there is no such job.
local raw = redis.call('HGET', KEYS[1], 'status')
if not raw then return nil end
local status = cjson.decode(raw)
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[3] then return 0 end
for i = 4, #ARGV do if ARGV[i] == status then
  for k, v in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], k, v) end
  return 1
end end
return 0
"""

CREATE = """
-- Record a new queued job, within its owner's quota of queued and running jobs.
-- KEYS: the job's hash. ARGV: fields (JSON of JSON-encoded values), key prefix, job id, owner ('' for
-- none), the owner's quota (0 for none), 1 if the job counts towards it. Answers the job's sequence
-- number, or 0 over the quota.
local prefix, id, owner, quota = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if owner ~= '' and quota > 0 and redis.call('SCARD', prefix .. ':active:' .. owner) >= quota then return 0 end
local seq = redis.call('INCR', prefix .. ':seq')
for k, v in pairs(cjson.decode(ARGV[1])) do redis.call('HSET', KEYS[1], k, v) end
redis.call('HSET', KEYS[1], 'seq', seq)
redis.call('ZADD', prefix .. ':jobs', seq, id)
redis.call('ZADD', prefix .. ':status:queued', seq, id)
redis.call('HINCRBY', prefix .. ':counts', 'queued', 1)
if owner ~= '' then
  redis.call('ZADD', prefix .. ':owner:' .. owner, seq, id)
  redis.call('ZADD', prefix .. ':owner:' .. owner .. ':status:queued', seq, id)
  if ARGV[6] == '1' then redis.call('SADD', prefix .. ':active:' .. owner, id) end
end
return seq
"""

FENCED = """
-- One step of an attempt that holds leases: every operation, or none when a lease is not the attempt's.
-- KEYS: the lease keys (ARGV[2] of them), then the keys the operations name (by their index in KEYS).
-- ARGV: the attempt's token, the number of lease keys, 1 to release the leases after the operations,
-- the operations as JSON, key prefix, retention (s), now (s), then payloads (operations name them by
-- their index in ARGV). Answers {1, result of each operation} or {0, index of the lease not held}.
local token, leases = ARGV[1], tonumber(ARGV[2])
for i = 1, leases do
  if redis.call('GET', KEYS[i]) ~= token then return {0, i} end
end
local prefix, retention, now = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])

-- A job's phase never goes back once saving has begun (a DELETE answered 409 from then on).
local function hset(key, fields)
  local saving = redis.call('HGET', key, 'phase') == '"saving"'
  for k, v in pairs(fields) do
    if not (saving and k == 'phase') then redis.call('HSET', key, k, v) end
  end
end

local function move(key, id, new, fields)
  local raw = redis.call('HGET', key, 'status')
  if raw ~= '"running"' then return 0 end
  -- Leaving running: its phase (saving included) ends with it.
  for k, v in pairs(fields) do redis.call('HSET', key, k, v) end
  redis.call('HSET', key, 'status', cjson.encode(new))
  local seq = tonumber(redis.call('HGET', key, 'seq') or '0')
  redis.call('ZREM', prefix .. ':status:running', id)
  redis.call('ZADD', prefix .. ':status:' .. new, seq, id)
  redis.call('HINCRBY', prefix .. ':counts', 'running', -1)
  redis.call('HINCRBY', prefix .. ':counts', new, 1)
  redis.call('ZADD', prefix .. ':finished', now, id)
  local owner = redis.call('HGET', key, 'owner')
  if owner and owner ~= 'null' then
    local who = cjson.decode(owner)
    redis.call('SREM', prefix .. ':active:' .. who, id)
    redis.call('ZREM', prefix .. ':owner:' .. who .. ':status:running', id)
    redis.call('ZADD', prefix .. ':owner:' .. who .. ':status:' .. new, seq, id)
  end
  redis.call('EXPIRE', key, retention + 86400)
  return 1
end

local results = {}
for _, op in ipairs(cjson.decode(ARGV[4])) do
  local kind, key = op[1], KEYS[op[2]]
  local result = 1
  if kind == 'hset' then
    hset(key, op[3])
  elseif kind == 'hset_unless' then  -- not when field op[4] holds the JSON value op[5]
    if redis.call('HGET', key, op[4]) == op[5] then result = 0 else hset(key, op[3]) end
  elseif kind == 'set' then
    local ttl = tonumber(op[4])
    if ttl > 0 then redis.call('SET', key, ARGV[op[3]], 'PX', ttl) else redis.call('SET', key, ARGV[op[3]]) end
  elseif kind == 'rpush' then
    redis.call('RPUSH', key, ARGV[op[3]])
    if tonumber(op[4]) > 0 then redis.call('PEXPIRE', key, op[4]) end
  elseif kind == 'del' then
    redis.call('DEL', key)
  elseif kind == 'move' then  -- a job of the attempt to its final status
    result = move(key, op[3], op[4], op[5])
  elseif kind == 'group_done' then  -- a sweep's group counted once; 1 for the group that counts the last
    result = 0
    if redis.call('SADD', KEYS[op[3]], op[4]) == 1 then
      redis.call('EXPIRE', KEYS[op[3]], retention + 86400)
      if redis.call('HINCRBY', key, 'groups_left', -1) == 0 then result = 1 end
    end
  elseif kind == 'sweep_end' then  -- a sweep to its final status, unless it has one
    local raw = redis.call('HGET', key, 'status')
    if raw == '"succeeded"' or raw == '"failed"' or raw == '"cancelled"' then result = 0 else
      hset(key, op[3])
      redis.call('SREM', prefix .. ':sweeps:active', op[4])
    end
  end
  results[#results + 1] = result
end
if ARGV[3] == '1' then
  for i = 1, leases do redis.call('DEL', KEYS[i]) end
end
return {1, unpack(results)}
"""

OWNER_INDEX = """
-- Put jobs written before the per-owner status index into it, each as its record says now (idempotent).
-- ARGV: key prefix, then job ids. Answers how many were indexed.
local prefix, indexed = ARGV[1], 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local job = redis.call('HMGET', prefix .. ':job:' .. id, 'status', 'owner', 'seq')
  if job[1] and job[2] and job[2] ~= 'null' then
    redis.call('ZADD', prefix .. ':owner:' .. cjson.decode(job[2]) .. ':status:' .. cjson.decode(job[1]),
               tonumber(job[3] or '0'), id)
    indexed = indexed + 1
  end
end
return indexed
"""
