-- takeover: an operator takes an active session over (automatic replies stop for it) or hands
-- it back, atomically, so two operators never both hold it. A field the drain reads under its
-- lease (when it applies a message and right before each automatic reply), not an inbox entry:
-- see docs/ARCHITECTURE.md, "Agent takeover". A change publishes the conversation on the
-- console's channel, so every open view shows who holds it.
--
-- Uses: rollups, outbox, sessions
-- KEYS: none (the keys are derived from the session id, through idx:conv)
-- ARGV:
--   sid             str   the session
--   operator        str   the operator's name
--   take            flag  take over (else hand back)
--   force           flag  hand back even when another operator holds it
--   now             int   the caller's clock (ms)
-- Returns {'ok', holder after ('' when handed back)}, {'missing', ''}, {'ended', status},
-- {'held', the other operator} or, handing back a session nobody holds, {'free', ''}.

local conv = conv_of(ARG.sid)
if not conv then return {'missing', ''} end
local skey = k_sess(conv, ARG.sid)
local h = redis.call('HMGET', skey, S.status, S.taken_over_by)
if not h[1] then return {'missing', ''} end
if h[1] ~= 'active' then return {'ended', h[1]} end
local holder = h[2]
if ARG.take then
  if holder and holder ~= ARG.operator then return {'held', holder} end
  if not holder then
    redis.call('HSET', skey, S.taken_over_by, ARG.operator, S.taken_over_at, ARG.now)
    redis.call('ZADD', K_TAKEOVER, ARG.now, ARG.sid)
    redis.call('PUBLISH', K_CONSOLE_CHANNEL, conv)
  end
  return {'ok', ARG.operator}
end
if not holder then return {'free', ''} end
if holder ~= ARG.operator and not ARG.force then return {'held', holder} end
redis.call('HDEL', skey, S.taken_over_by, S.taken_over_at)
redis.call('HSET', skey, S.handed_back_at, ARG.now)
redis.call('ZREM', K_TAKEOVER, ARG.sid)
redis.call('PUBLISH', K_CONSOLE_CHANNEL, conv)
return {'ok', ''}
