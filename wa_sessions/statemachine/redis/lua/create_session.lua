-- create_session: opens a session unless the conversation has a live one (the session API).
--
-- Uses: rollups, outbox, sessions
-- KEYS: none (the keys are derived from the conversation)
-- ARGV:
--   conv            str   the conversation, <customer>|<business>
--   sid             str   the new session's id
--   ts              int   now (ms): its creation time, and the time the live one is judged at
--   timeout_ms      int   inactivity before a session expires
--   keep_ms         int   how long an ended session's keys live
--   initial         str   its first (inbound text) message JSON, '' for none
--   context         json  {field: JSON value} written into the new session's hash
-- Returns {'exists', live sid} or {'created', sid, expired sid or ''}.

local sid, expired = current_session(ARG.conv, ARG.ts, ARG.timeout_ms, ARG.ts, ARG.keep_ms)
if sid then return {'exists', sid} end
open_session(ARG.conv, ARG.sid, ARG.ts, {})
local skey = k_sess(ARG.conv, ARG.sid)
for field, value in pairs(ARG.context) do redis.call('HSET', skey, field, value) end
if ARG.initial ~= '' then append(ARG.conv, ARG.sid, ARG.initial, 'inbound', 'text', ARG.ts, 1e18) end
return {'created', ARG.sid, expired or ''}
