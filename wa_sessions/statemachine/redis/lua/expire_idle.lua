-- expire_idle: one batch of the expiry sweep. Expires active sessions idle past the timeout,
-- skipping conversations whose inbox still holds entries (those entries carry their arrival
-- time and decide for themselves).
--
-- Uses: rollups, outbox, sessions
-- KEYS: none (the global active index and keys derived from it)
-- ARGV:
--   now             int   the sweep's clock (ms)
--   timeout_ms      int   inactivity before a session expires
--   keep_ms         int   how long an ended session's keys live
--   limit           int   candidates per batch
--   offset          int   earlier candidates skipped (still in the index)
-- Returns {expired sids, candidates examined, candidates skipped}.

local ids = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', ARG.now - ARG.timeout_ms, 'LIMIT',
  ARG.offset, ARG.limit)
local out = {}
local skipped = 0
for _, sid in ipairs(ids) do
  local conv = conv_of(sid)
  local h = conv and redis.call('HMGET', k_sess(conv, sid), S.status, S.last_activity) or {}
  if h[1] ~= 'active' then
    redis.call('ZREM', K_ACTIVE, sid)
  elseif tonumber(h[2]) + ARG.timeout_ms <= ARG.now
      and redis.call('LLEN', k_inbox(conv)) == 0 then
    end_session(conv, sid, 'expire', ARG.now, 'timeout', ARG.keep_ms)
    table.insert(out, sid)
  else
    skipped = skipped + 1
  end
end
return {out, #ids, skipped}
