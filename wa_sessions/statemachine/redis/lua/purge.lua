-- purge: drops ended sessions older than the retention period from every index and deletes
-- their keys and their idx:conv entries. Once the archive consumer group exists on the outbox,
-- a session whose end event it has not acknowledged yet is kept (the archive reads its
-- messages from here); it goes in a later pass.
--
-- Uses: rollups, outbox, sessions
-- KEYS: none (the global indexes and keys derived from them)
-- ARGV:
--   cutoff_ms       int   sessions ended at or before this go
--   limit           int   sessions per batch
-- Returns how many sessions it purged.

local horizon = outbox_horizon(OUTBOX_ARCHIVE_GROUP)
local ids = redis.call('ZRANGEBYSCORE', K_ENDED, '-inf', ARG.cutoff_ms, 'LIMIT', 0, ARG.limit)
local purged = 0
for _, sid in ipairs(ids) do
  local conv = conv_of(sid)
  local held = false
  if conv and horizon then
    local ob = redis.call('HGET', k_sess(conv, sid), S.outbox_id)
    held = ob and not outbox_id_before(ob, horizon)
  end
  if held then
    -- Not archived yet: kept, and the ids after it wait with it (they are in end order).
    break
  end
  purged = purged + 1
  if conv then
    redis.call('ZREM', k_sessions(conv), sid)
    redis.call('DEL', k_sess(conv, sid), k_msgs(conv, sid))
    redis.call('HDEL', K_SESSION_CONV, sid)
  end
  redis.call('ZREM', K_ALL, sid)
  redis.call('ZREM', k_status('completed'), sid)
  redis.call('ZREM', k_status('expired'), sid)
  redis.call('ZREM', K_ENDED, sid)
end
return purged
