-- events_claim: the heads due now, each leased for one attempt (its due time moved past the
-- attempt's timeout, so another outbox process, or this one after a crash, takes it only when
-- the lease lapses). A head's first claim is its first attempt: the retry window starts there.
--
-- KEYS:
--   due                   each session's head entry by when its next attempt is due
--   state                 outbox entry id -> its delivery state (JSON: sid, n, first)
-- ARGV:
--   now_ms          int   the caller's clock (epoch ms)
--   lease_ms        int   how long one attempt may hold an entry
--   limit           int   entries to claim at most
-- Returns entry id, state JSON, entry id, state JSON, ...

local ids = redis.call('ZRANGEBYSCORE', KEY.due, '-inf', ARG.now_ms, 'LIMIT', 0, ARG.limit)
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEY.state, id)
  if raw then
    local st = cjson.decode(raw)
    if st.first == 0 then
      st.first = ARG.now_ms
      raw = cjson.encode(st)
      redis.call('HSET', KEY.state, id, raw)
    end
    redis.call('ZADD', KEY.due, ARG.now_ms + ARG.lease_ms, id)
    out[#out + 1] = id
    out[#out + 1] = raw
  else
    redis.call('ZREM', KEY.due, id)
  end
end
return out
