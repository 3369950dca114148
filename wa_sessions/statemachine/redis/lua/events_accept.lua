-- events_accept: takes an outbox entry into its session's queue of outgoing events (the head
-- of the queue is due at once), unless it is there already: the outbox runner hands an entry
-- again after a crash, and the retry schedule kept here must not restart.
--
-- KEYS:
--   state                 outbox entry id -> its delivery state (JSON: sid, n, first)
--   due                   each session's head entry by when its next attempt is due
--   queue                 the session's undelivered entry ids, oldest first
-- ARGV:
--   entry_id        str   the outbox entry id
--   session_id      str   its session (events of one session go out in order)
--   now_ms          int   the caller's clock (epoch ms)
-- Returns 1 when taken, 0 when it was there already.

if redis.call('HEXISTS', KEY.state, ARG.entry_id) == 1 then return 0 end
redis.call('HSET', KEY.state, ARG.entry_id,
  cjson.encode({sid = ARG.session_id, n = 0, first = 0}))
if redis.call('RPUSH', KEY.queue, ARG.entry_id) == 1 then
  redis.call('ZADD', KEY.due, ARG.now_ms, ARG.entry_id)
end
return 1
