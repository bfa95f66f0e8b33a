"""The Lua scripts behind Dispatch: each change to the pending queues and the units in flight is one atomic step.

Keys, under <prefix>:dispatch: (ARGV[1] is the service's key prefix):
  queue:<owner>  LIST   the owner's units waiting, oldest first
  owners         ZSET   owners with units waiting, scored by when each was last served (the dispatch clock)
  served         HASH   owner → when it was last served, kept while it has nothing waiting
  pending        ZSET   every unit waiting, by arrival (what KEDA counts, beside Celery's own list)
  units          HASH   unit id → its entry (JSON: owner, jobs, message), while waiting or in flight
  inflight       ZSET   units sent to the broker and not yet ended, scored by when they were sent (ms)
  nodes, slots   ZSET, HASH   worker nodes alive (scored by when their word lapses) and their worker processes
"""

# Shared by the scripts: Redis's own clock in ms (the same for every caller whatever its host's clock).
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local d = ARGV[1] .. ':dispatch:'
"""

ENQUEUE = (
    _NOW
    + """
-- Queue units for an owner, unless waiting or in flight already. ARGV: prefix, owner, then pairs of unit id
-- and entry. Answers how many were queued.
local owner, added = ARGV[2], 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if not redis.call('ZSCORE', d .. 'pending', id) and not redis.call('ZSCORE', d .. 'inflight', id) then
    redis.call('HSET', d .. 'units', id, ARGV[i + 1])
    redis.call('ZADD', d .. 'pending', redis.call('INCR', d .. 'seq'), id)
    redis.call('RPUSH', d .. 'queue:' .. owner, id)
    added = added + 1
  end
end
if added > 0 and not redis.call('ZSCORE', d .. 'owners', owner) then
  redis.call('ZADD', d .. 'owners', tonumber(redis.call('HGET', d .. 'served', owner) or '0'), owner)
end
return added
"""
)

RESERVE = (
    _NOW
    + """
-- Take the units that go next, as many as the broker should hold: the worker processes of the nodes alive
-- less the units in flight that occupy one. Each comes from the owner served least lately
-- among those with units waiting. ARGV: prefix, most units. Answers their entries, now in flight.
local prefix = ARGV[1]
for _, node in ipairs(redis.call('ZRANGEBYSCORE', d .. 'nodes', '-inf', now)) do
  redis.call('ZREM', d .. 'nodes', node)
  redis.call('HDEL', d .. 'slots', node)
end
local slots = 0
for _, node in ipairs(redis.call('ZRANGE', d .. 'nodes', 0, -1)) do
  slots = slots + tonumber(redis.call('HGET', d .. 'slots', node) or '0')
end
-- A unit in flight occupies a place while one of its jobs waits in the broker (queued) or runs under a
-- live lease; once all its jobs have ended it is forgotten (its worker died before saying so).
local busy, waiting = 0, 0
for _, id in ipairs(redis.call('ZRANGE', d .. 'inflight', 0, -1)) do
  local entry = redis.call('HGET', d .. 'units', id)
  local ended, occupies, queued = true, false, false
  for _, job in ipairs(entry and cjson.decode(entry).jobs or {}) do
    local raw = redis.call('HGET', prefix .. ':job:' .. job, 'status')
    if raw == '"queued"' then ended, occupies, queued = false, true, true
    elseif raw == '"running"' then
      ended = false
      if redis.call('EXISTS', prefix .. ':lease:' .. job) == 1 then occupies = true end
    end
  end
  if ended then
    redis.call('ZREM', d .. 'inflight', id)
    redis.call('HDEL', d .. 'units', id)
  elseif occupies then busy = busy + 1 end
  if queued then waiting = waiting + 1 end
end
-- Without any node's word (none started yet, or all gone), one unit waits in the broker for the next.
local free = slots - busy
if slots == 0 then free = 1 - waiting end
free = math.min(free, tonumber(ARGV[2]))
local taken = {}
while free > 0 do
  local top = redis.call('ZRANGE', d .. 'owners', 0, 0)
  if #top == 0 then break end
  local owner = top[1]
  local queue = d .. 'queue:' .. owner
  local id = redis.call('LPOP', queue)
  local served = redis.call('INCR', d .. 'clock')
  redis.call('HSET', d .. 'served', owner, served)
  if redis.call('LLEN', queue) > 0 then redis.call('ZADD', d .. 'owners', served, owner)
  else redis.call('ZREM', d .. 'owners', owner) end
  if id then
    redis.call('ZREM', d .. 'pending', id)
    local entry = redis.call('HGET', d .. 'units', id)
    if entry then
      redis.call('ZADD', d .. 'inflight', now, id)
      taken[#taken + 1] = entry
      free = free - 1
    end
  end
end
return taken
"""
)

UNRESERVE = (
    _NOW
    + """
-- Put a unit taken but never sent back at the head of its owner's queue, that owner first.
-- ARGV: prefix, unit id. Answers 1 when put back.
local id = ARGV[2]
local entry = redis.call('HGET', d .. 'units', id)
if not entry or redis.call('ZREM', d .. 'inflight', id) == 0 then return 0 end
local owner = cjson.decode(entry).owner
redis.call('LPUSH', d .. 'queue:' .. owner, id)
redis.call('ZADD', d .. 'pending', 0, id)
redis.call('ZADD', d .. 'owners', 0, owner)
return 1
"""
)

WITHDRAW = (
    _NOW
    + """
-- Take a waiting unit out of its owner's queue (its jobs were cancelled). ARGV: prefix, unit id.
-- Answers 1 when it was waiting.
local id = ARGV[2]
if not redis.call('ZSCORE', d .. 'pending', id) then return 0 end
local entry = redis.call('HGET', d .. 'units', id)
redis.call('ZREM', d .. 'pending', id)
redis.call('HDEL', d .. 'units', id)
if entry then
  local owner = cjson.decode(entry).owner
  local queue = d .. 'queue:' .. owner
  redis.call('LREM', queue, 1, id)
  if redis.call('LLEN', queue) == 0 then redis.call('ZREM', d .. 'owners', owner) end
end
return 1
"""
)

SENT = (
    _NOW
    + """
-- A unit sent to the broker outside its turn (a takeover, a message sent again): in flight from now, out of
-- its queue if it waited. ARGV: prefix, unit id, entry.
local id = ARGV[2]
if redis.call('ZSCORE', d .. 'pending', id) then
  local owner = cjson.decode(redis.call('HGET', d .. 'units', id) or ARGV[3]).owner
  local queue = d .. 'queue:' .. owner
  redis.call('ZREM', d .. 'pending', id)
  redis.call('LREM', queue, 1, id)
  if redis.call('LLEN', queue) == 0 then redis.call('ZREM', d .. 'owners', owner) end
end
redis.call('HSET', d .. 'units', id, ARGV[3])
redis.call('ZADD', d .. 'inflight', now, id)
return 1
"""
)

HEARTBEAT = (
    _NOW
    + """
-- A worker node alive with its worker processes, for ARGV[4] ms more. ARGV: prefix, node, processes, ms.
redis.call('ZADD', d .. 'nodes', now + tonumber(ARGV[4]), ARGV[2])
redis.call('HSET', d .. 'slots', ARGV[2], ARGV[3])
return 1
"""
)
