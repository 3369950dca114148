-- purge: drops ended sessions older than the retention period from every index and deletes
-- their keys and their idx:conv entries.
--
-- Uses: rollups, sessions
-- KEYS: none (the global indexes and keys derived from them)
-- ARGV:
--   cutoff_ms       int   sessions ended at or before this go
--   limit           int   sessions per batch
-- Returns how many sessions it purged.

local ids = redis.call('ZRANGEBYSCORE', K_ENDED, '-inf', ARG.cutoff_ms, 'LIMIT', 0, ARG.limit)
for _, sid in ipairs(ids) do
  local conv = conv_of(sid)
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
return #ids
