-- events_retry: records a failed attempt and when the next one is due (kept in Redis, so the
-- schedule survives a restart). Nothing happens to an entry finished meanwhile.
--
-- KEYS:
--   state                 outbox entry id -> its delivery state (JSON: sid, n, first)
--   due                   each session's head entry by when its next attempt is due
-- ARGV:
--   entry_id        str   the outbox entry id
--   attempts        int   attempts made so far
--   next_ms         int   when the next attempt is due (epoch ms)
-- Returns 1 when rescheduled, 0 when the entry is no longer waiting.

local raw = redis.call('HGET', KEY.state, ARG.entry_id)
if not raw then return 0 end
local st = cjson.decode(raw)
st.n = ARG.attempts
redis.call('HSET', KEY.state, ARG.entry_id, cjson.encode(st))
redis.call('ZADD', KEY.due, 'XX', ARG.next_ms, ARG.entry_id)
return 1
