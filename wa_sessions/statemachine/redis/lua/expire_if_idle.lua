-- expire_if_idle: expires one session when it is active, idle past the timeout, and its
-- conversation's inbox is empty.
--
-- Uses: rollups, outbox, sessions
-- KEYS: none (the keys are derived from the session id, through idx:conv)
-- ARGV:
--   sid             str   the session
--   now             int   the caller's clock (ms)
--   timeout_ms      int   inactivity before a session expires
--   keep_ms         int   how long an ended session's keys live
-- Returns 1 when it expired the session, else 0.

local conv = conv_of(ARG.sid)
if not conv then return 0 end
local h = redis.call('HMGET', k_sess(conv, ARG.sid), S.status, S.last_activity)
if h[1] == 'active' and tonumber(h[2]) + ARG.timeout_ms <= ARG.now
    and redis.call('LLEN', k_inbox(conv)) == 0 then
  end_session(conv, ARG.sid, 'expire', ARG.now, 'timeout', ARG.keep_ms)
  return 1
end
return 0
