-- read_active: the conversation's active session, expired on the way when idle past the
-- timeout, unless its inbox still holds entries (those decide, with their acceptance times).
--
-- Uses: rollups, outbox, sessions
-- KEYS: none (the keys are derived from the conversation)
-- ARGV:
--   conv            str   the conversation
--   now             int   the caller's clock (ms)
--   timeout_ms      int   inactivity before a session expires
--   keep_ms         int   how long an ended session's keys live
-- Returns {active sid or '', sid expired here or ''}.

local sid, expired = current_session(ARG.conv, ARG.now, ARG.timeout_ms, ARG.now, ARG.keep_ms,
  true)
return {sid or '', expired or ''}
