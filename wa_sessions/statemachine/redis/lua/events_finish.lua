-- events_finish: an outgoing event delivered or given up, in one step: acknowledged in the
-- outbox's events group, out of its session's queue, the session's next event due at once,
-- and, when given up, its record kept for operators and replay (the newest `keep`).
--
-- KEYS:
--   outbox                the outbox stream
--   state                 outbox entry id -> its delivery state (JSON: sid, n, first)
--   due                   each session's head entry by when its next attempt is due
--   queue                 the session's undelivered entry ids, oldest first
--   given_up              entry id -> the given-up record (JSON)
--   given_up_at           given-up entry ids by when
-- ARGV:
--   group           str   the consumer group (events)
--   entry_id        str   the outbox entry id
--   now_ms          int   the caller's clock (epoch ms)
--   keep            int   given-up records kept at most
--   record?         str   the given-up record; absent when delivered
-- Returns the session's next entry id, or false.

redis.call('XACK', KEY.outbox, ARG.group, ARG.entry_id)
redis.call('HDEL', KEY.state, ARG.entry_id)
redis.call('ZREM', KEY.due, ARG.entry_id)
redis.call('LREM', KEY.queue, 1, ARG.entry_id)
if ARG.record then
  redis.call('HSET', KEY.given_up, ARG.entry_id, ARG.record)
  redis.call('ZADD', KEY.given_up_at, ARG.now_ms, ARG.entry_id)
  local extra = redis.call('ZCARD', KEY.given_up_at) - ARG.keep
  if extra > 0 then
    local old = redis.call('ZRANGE', KEY.given_up_at, 0, extra - 1)
    redis.call('ZREMRANGEBYRANK', KEY.given_up_at, 0, extra - 1)
    for _, id in ipairs(old) do redis.call('HDEL', KEY.given_up, id) end
  end
end
local next_id = redis.call('LINDEX', KEY.queue, 0)
if next_id then
  redis.call('ZADD', KEY.due, 'NX', ARG.now_ms, next_id)
end
return next_id
