-- redrive: the conversations that need a drain and have none (inbox or effects non-empty, no
-- lease, no wake-up queued), each marked woken so that the next pass does not wake it again.
-- First records how long wake flags live from now on (`wake:ttl`, for hold_ms): longer than a
-- wake-up waits in Dramatiq's queue, or every message of a backed-up phone would queue another.
--
-- Uses: names
-- KEYS: none (the global pending index and keys derived from it)
-- ARGV:
--   wake_ttl_ms     str   the wake flags' TTL
--   limit           int   conversations per pass
--   hold_ms         str   how long that TTL holds (then the lease period again)
-- Returns the conversations to wake.

redis.call('SET', K_WAKE_TTL, ARG.wake_ttl_ms, 'PX', ARG.hold_ms)
local convs = redis.call('ZRANGE', K_PENDING, 0, ARG.limit - 1)
local out = {}
for _, conv in ipairs(convs) do
  if redis.call('LLEN', k_inbox(conv)) == 0
      and redis.call('LLEN', k_effects(conv)) == 0 then
    if redis.call('EXISTS', k_lease(conv)) == 0 then
      redis.call('ZREM', K_PENDING, conv)
    end
  elseif redis.call('EXISTS', k_lease(conv)) == 0
      and redis.call('SET', k_wake(conv), '1', 'NX', 'PX', ARG.wake_ttl_ms) then
    table.insert(out, conv)
  end
end
return out
