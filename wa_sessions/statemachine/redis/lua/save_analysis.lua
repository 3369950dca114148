-- save_analysis: stores a session's analysis only if the session still has the fingerprint
-- the analysis read (its customer and business messages: how many, and the last one's id;
-- system notes left out), so an analysis computed while a message arrived is never stored as
-- current; or, for a failed analysis, appends a system note about it. Works on active and
-- ended sessions alike (a note does not change the fingerprint, its activity or its status).
-- A change publishes the conversation on the console's channel.
--
-- Uses: rollups, sessions
-- KEYS: none (the keys are derived from the session id, through idx:conv)
-- ARGV:
--   sid             str   the session
--   fingerprint     str   '<messages>:<last message id>' the analysis read
--   analysis        str   the analysis JSON ('' with a note)
--   note            str   a system message JSON ('' with an analysis)
--   cap             int   messages kept per session (MAX_MESSAGES_PER_SESSION)
-- Returns {'stored', ''}, {'stale', the session's fingerprint now}, {'noted', ''} or
-- {'missing', ''}.

local conv = conv_of(ARG.sid)
if not conv then return {'missing', ''} end
local skey = k_sess(conv, ARG.sid)
local mkey = k_msgs(conv, ARG.sid)
local h = redis.call('HMGET', skey, S.status, S.message_count, S.by_type .. 'system')
if not h[1] then return {'missing', ''} end

if ARG.note ~= '' then
  local n = redis.call('RPUSH', mkey, ARG.note)
  if n > ARG.cap then
    redis.call('LTRIM', mkey, n - ARG.cap, -1)
    redis.call('HINCRBY', skey, S.trimmed, n - ARG.cap)
  end
  redis.call('HINCRBY', skey, S.message_count, 1)
  redis.call('HINCRBY', skey, S.by_direction .. 'outbound', 1)
  redis.call('HINCRBY', skey, S.by_type .. 'system', 1)
  redis.call('PUBLISH', K_CONSOLE_CHANNEL, conv)
  return {'noted', ''}
end

-- The fingerprint now: the last message that is not a system note, read from the tail.
local last = ''
local len = redis.call('LLEN', mkey)
local stop = -1
while last == '' and -stop <= len do
  local start = math.max(stop - 31, -len)
  local chunk = redis.call('LRANGE', mkey, start, stop)
  for i = #chunk, 1, -1 do
    local m = cjson.decode(chunk[i])
    if m.message_type ~= 'system' then
      last = m.id
      break
    end
  end
  stop = start - 1
end
local now = (tonumber(h[2] or '0') - tonumber(h[3] or '0')) .. ':' .. last
if now ~= ARG.fingerprint then return {'stale', now} end
redis.call('HSET', skey, S.analysis, ARG.analysis)
redis.call('PUBLISH', K_CONSOLE_CHANNEL, conv)
return {'stored', ''}
