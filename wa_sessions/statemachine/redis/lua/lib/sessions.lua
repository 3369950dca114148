-- Library: sessions. End one, find a conversation's live one (expiring it when idle), open
-- one, append a message to one. Needs the prelude (key names, the lifecycle table T) and the
-- rollups library (opening and ending count in the analytics) and the outbox library (opening
-- and ending are outbox events); hash fields are written
-- S.<field>, the loader puts in the names. A session's keys carry its
-- conversation's hash tag: every function takes both the conversation and the session id.

-- The conversation of a session known by id only (false when it is unknown or purged).
local function conv_of(sid)
  return redis.call('HGET', K_SESSION_CONV, sid)
end

-- Ends `sid` with `trigger` if the lifecycle table allows it. Returns ok, state-after-or-before.
local function end_session(conv, sid, trigger, now, reason, keep_ms)
  local skey = k_sess(conv, sid)
  local st = redis.call('HGET', skey, S.status)
  if not st then return false, 'missing' end
  local dest = T[st .. '|' .. trigger]
  if not dest or dest == 'active' then return false, st end
  redis.call('HSET', skey, S.status, dest, S.ended, now, S.end_reason, reason)
  local info = redis.call('HMGET', skey, S.created, S.message_count, S.business, S.order)
  local duration_ms, count = now - tonumber(info[1]), tonumber(info[2] or '0')
  redis.call('RPUSH', K_ENDED_EVENTS,
    dest .. ' ' .. duration_ms .. ' ' .. count .. ' ' .. sid .. ' ' .. reason)
  rollup_ended(info[3], now, dest, duration_ms, count, info[4])
  if redis.call('LLEN', K_ENDED_EVENTS) > 100000 then redis.call('LPOP', K_ENDED_EVENTS) end
  local ak = k_active(conv)
  if redis.call('GET', ak) == sid then redis.call('DEL', ak) end
  redis.call('ZREM', K_ACTIVE, sid)
  redis.call('ZREM', K_NUDGE, sid)
  -- An ended session is held by no operator (the takeover gauge counts live ones only).
  if redis.call('ZREM', K_TAKEOVER, sid) == 1 then
    redis.call('HDEL', skey, S.taken_over_by, S.taken_over_at)
  end
  redis.call('ZADD', k_status(dest), now, sid)
  redis.call('ZADD', K_ENDED, now, sid)
  redis.call('PEXPIRE', skey, keep_ms)
  redis.call('PEXPIRE', k_msgs(conv, sid), keep_ms)
  -- Its outbox entry's id: the purge keeps the session until the archive has acknowledged it.
  redis.call('HSET', skey, S.outbox_id, outbox_session('session.' .. dest, conv, sid, now))
  -- The console's live views learn of every end, whoever ended it (sweep, operator, drain).
  redis.call('PUBLISH', K_CONSOLE_CHANNEL, conv)
  return true, dest
end

-- The conversation's live active session at time `ts`, expiring it first when idle past timeout.
-- Readers pass `defer_to_inbox`: while the inbox holds entries, those (with their acceptance
-- times) decide whether the session continues, so a read must not expire it under them.
-- Returns sid-or-false, expired-sid-or-false.
local function current_session(conv, ts, timeout_ms, now, keep_ms, defer_to_inbox)
  local ak = k_active(conv)
  local sid = redis.call('GET', ak)
  if not sid then return false, false end
  local h = redis.call('HMGET', k_sess(conv, sid), S.status, S.last_activity)
  if h[1] ~= 'active' then
    redis.call('DEL', ak)
    return false, false
  end
  if tonumber(h[2]) + timeout_ms <= ts
      and not (defer_to_inbox and redis.call('LLEN', k_inbox(conv)) > 0) then
    end_session(conv, sid, 'expire', now, 'timeout', keep_ms)
    return false, sid
  end
  return sid, false
end

-- Opens session `sid` at `ts`, with the `carry` context keys of the conversation's last session.
local function open_session(conv, sid, ts, carry)
  local phone, biz = string.match(conv, '^(.-)|(.*)$')
  local skey = k_sess(conv, sid)
  redis.call('HSET', skey, S.session_id, sid, S.phone, phone, S.business, biz, S.conv, conv,
    S.status, 'active', S.created, ts, S.last_activity, ts, S.message_count, 0)
  if #carry > 0 then
    local prev = redis.call('ZREVRANGE', k_sessions(conv), 0, 0)[1]
    if prev then
      for _, name in ipairs(carry) do
        local v = redis.call('HGET', k_sess(conv, prev), S.context .. name)
        if v then redis.call('HSET', skey, S.context .. name, v) end
      end
    end
  end
  redis.call('HSET', K_SESSION_CONV, sid, conv)
  redis.call('SET', k_active(conv), sid)
  redis.call('ZADD', k_sessions(conv), ts, sid)
  redis.call('ZADD', K_ALL, ts, sid)
  redis.call('ZADD', K_ACTIVE, ts, sid)
  redis.call('ZADD', K_NUDGE, ts, sid)
  rollup_add(biz, ts, A.started, 1)
  outbox_session('session.started', conv, sid, ts)
end

-- Returns false and the message's absolute position in the history (trimmed ones included),
-- or an error reply. A `passive` message (the nudge) is stored without counting as activity:
-- it neither postpones the session's expiry nor its place in the nudge index.
local function append(conv, sid, msg, direction, mtype, ts, cap, passive)
  local skey = k_sess(conv, sid)
  local h = redis.call('HMGET', skey, S.status, S.last_activity, S.last_inbound, S.trimmed,
    S.nudged)
  if T[tostring(h[1]) .. '|receive'] ~= 'active' then
    return redis.error_reply('cannot receive in state ' .. tostring(h[1]))
  end
  local mkey = k_msgs(conv, sid)
  local n = redis.call('RPUSH', mkey, msg)
  local pos = tonumber(h[4] or '0') + n - 1
  if n > cap then
    redis.call('LTRIM', mkey, n - cap, -1)
    redis.call('HINCRBY', skey, S.trimmed, n - cap)
  end
  redis.call('HINCRBY', skey, S.message_count, 1)
  redis.call('HINCRBY', skey, S.by_direction .. direction, 1)
  redis.call('HINCRBY', skey, S.by_type .. mtype, 1)
  if ts > tonumber(h[2]) and not passive then
    redis.call('HSET', skey, S.last_activity, ts)
    redis.call('ZADD', K_ACTIVE, ts, sid)
    -- The nudge index follows the last activity until the session's one nudge is claimed.
    if not h[5] then redis.call('ZADD', K_NUDGE, ts, sid) end
  end
  if direction == 'inbound' and ts > tonumber(h[3] or '0') then
    redis.call('HSET', skey, S.last_inbound, ts)
  end
  return false, pos
end

-- Appends a message to the conversation's live session, opening one when needed.
-- Returns {sid, created (0/1), expired sid or ''}, or an error reply.
local function apply_message(conv, ts, now, new_sid, timeout_ms, cap, keep_ms, direction, mtype,
                             msg, carry)
  local sid, expired = current_session(conv, ts, timeout_ms, now, keep_ms)
  local created = 0
  if not sid then
    open_session(conv, new_sid, ts, carry)
    sid = new_sid
    created = 1
  end
  local err = append(conv, sid, msg, direction, mtype, ts, cap)
  if err then return err end
  return {sid, created, expired or ''}
end
