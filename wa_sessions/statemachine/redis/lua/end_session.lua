-- end_session: fires a lifecycle trigger (complete, expire) on one session, atomically.
--
-- Uses: rollups, outbox, sessions
-- KEYS: none (the keys are derived from the session id, through idx:conv)
-- ARGV:
--   sid             str   the session
--   trigger         str   complete or expire
--   now             int   the end time (ms)
--   keep_ms         int   how long the ended session's keys live
--   reason          str   its end reason
-- Returns {'ok', new state}, {'missing', ''} or {'invalid', current state}.

local conv = conv_of(ARG.sid)
if not conv then return {'missing', ''} end
local ok, st = end_session(conv, ARG.sid, ARG.trigger, ARG.now, ARG.reason, ARG.keep_ms)
if ok then return {'ok', st} end
if st == 'missing' then return {'missing', ''} end
return {'invalid', st}
