"""The Lua scripts that make every state change one atomic Redis round trip.

Each script is the prelude (key names from ``keys``, the lifecycle table from ``lifecycle``)
followed by its body. Times are epoch milliseconds passed in by the caller, never Redis' clock,
so tests drive time with an injected clock.

Inbox entries are ``<accepted_ms>\\t<kind>\\t<a>\\t<b>\\t<payload>``:
``m`` (message: a=direction, b=type, payload=message JSON) or
``c``/``x`` (complete/expire: a=session id or empty for the active one, b=op id, payload=reason).

Effects of an inbound text or image message (order extraction, reply) are two-phase: applying
the message also appends ``<sid>\\t<message JSON>`` to the conversation's effects list; the
drain runs the effects of a whole batch outside Redis, then its next ``drain_step`` records
their outcome and pops the records, fenced like an apply. Until then the conversation counts as
having work pending.
"""

from __future__ import annotations

from wa_sessions.statemachine.lifecycle import transition_table
from wa_sessions.statemachine.models import DELIVERY_RANK
from wa_sessions.statemachine.redis.keys import Keys

_CORE = r"""
-- Ends `sid` with `trigger` if the lifecycle table allows it. Returns ok, state-after-or-before.
local function end_session(sid, trigger, now, reason, keep_ms)
  local skey = k_sess(sid)
  local h = redis.call('HMGET', skey, 'status', 'conv')
  local st = h[1]
  if not st then return false, 'missing' end
  local dest = T[st .. '|' .. trigger]
  if not dest or dest == 'active' then return false, st end
  redis.call('HSET', skey, 'status', dest, 'ended', now, 'end_reason', reason)
  local info = redis.call('HMGET', skey, 'created', 'count')
  redis.call('RPUSH', K_ENDED_EVENTS,
    dest .. ' ' .. (now - tonumber(info[1])) .. ' ' .. (info[2] or '0') .. ' ' .. reason)
  if redis.call('LLEN', K_ENDED_EVENTS) > 100000 then redis.call('LPOP', K_ENDED_EVENTS) end
  local ak = k_conv(h[2], 'active')
  if redis.call('GET', ak) == sid then redis.call('DEL', ak) end
  redis.call('ZREM', K_ACTIVE, sid)
  redis.call('ZADD', k_status(dest), now, sid)
  redis.call('ZADD', K_ENDED, now, sid)
  redis.call('PEXPIRE', skey, keep_ms)
  redis.call('PEXPIRE', k_msgs(sid), keep_ms)
  return true, dest
end

-- The conversation's live active session at time `ts`, expiring it first when idle past timeout.
-- Readers pass `defer_to_inbox`: while the inbox holds entries, those (with their acceptance
-- times) decide whether the session continues, so a read must not expire it under them.
-- Returns sid-or-false, expired-sid-or-false.
local function current_session(conv, ts, timeout_ms, now, keep_ms, defer_to_inbox)
  local ak = k_conv(conv, 'active')
  local sid = redis.call('GET', ak)
  if not sid then return false, false end
  local h = redis.call('HMGET', k_sess(sid), 'status', 'last')
  if h[1] ~= 'active' then
    redis.call('DEL', ak)
    return false, false
  end
  if tonumber(h[2]) + timeout_ms <= ts
      and not (defer_to_inbox and redis.call('LLEN', k_conv(conv, 'inbox')) > 0) then
    end_session(sid, 'expire', now, 'timeout', keep_ms)
    return false, sid
  end
  return sid, false
end

local function open_session(conv, sid, ts, carry)
  local phone, biz = string.match(conv, '^(.-)|(.*)$')
  local skey = k_sess(sid)
  redis.call('HSET', skey, 'sid', sid, 'phone', phone, 'biz', biz, 'conv', conv,
    'status', 'active', 'created', ts, 'last', ts, 'count', 0)
  if #carry > 0 then
    local prev = redis.call('ZREVRANGE', k_conv(conv, 'sessions'), 0, 0)[1]
    if prev then
      for _, name in ipairs(carry) do
        local v = redis.call('HGET', k_sess(prev), 'ctx:' .. name)
        if v then redis.call('HSET', skey, 'ctx:' .. name, v) end
      end
    end
  end
  redis.call('SET', k_conv(conv, 'active'), sid)
  redis.call('ZADD', k_conv(conv, 'sessions'), ts, sid)
  redis.call('ZADD', K_ALL, ts, sid)
  redis.call('ZADD', K_ACTIVE, ts, sid)
end

-- Returns false and the message's absolute position in the history (trimmed ones included),
-- or an error reply.
local function append(sid, msg, direction, mtype, ts, cap)
  local skey = k_sess(sid)
  local h = redis.call('HMGET', skey, 'status', 'last', 'last_in', 'trimmed')
  if T[tostring(h[1]) .. '|receive'] ~= 'active' then
    return redis.error_reply('cannot receive in state ' .. tostring(h[1]))
  end
  local mkey = k_msgs(sid)
  local n = redis.call('RPUSH', mkey, msg)
  local pos = tonumber(h[4] or '0') + n - 1
  if n > cap then
    redis.call('LTRIM', mkey, n - cap, -1)
    redis.call('HINCRBY', skey, 'trimmed', n - cap)
  end
  redis.call('HINCRBY', skey, 'count', 1)
  redis.call('HINCRBY', skey, 'n:' .. direction, 1)
  redis.call('HINCRBY', skey, 't:' .. mtype, 1)
  if ts > tonumber(h[2]) then
    redis.call('HSET', skey, 'last', ts)
    redis.call('ZADD', K_ACTIVE, ts, sid)
  end
  if direction == 'inbound' and ts > tonumber(h[3] or '0') then
    redis.call('HSET', skey, 'last_in', ts)
  end
  return false, pos
end

-- Appends a message to the conversation's live session, opening one when needed.
local function apply_message(conv, ts, now, new_sid, timeout_ms, cap, keep_ms, direction, mtype,
                             msg, carry)
  local sid, expired = current_session(conv, ts, timeout_ms, now, keep_ms)
  local created = 0
  if not sid then
    open_session(conv, new_sid, ts, carry)
    sid = new_sid
    created = 1
  end
  local err = append(sid, msg, direction, mtype, ts, cap)
  if err then return err end
  return {sid, created, expired or ''}
end

-- Writes a delivery status into an outbound message's metadata, found by its absolute position
-- (checked by id). Returns false when the message has been trimmed from the history or purged.
local function set_delivery(sid, pos, mid, status, code, at)
  local idx = tonumber(pos) - tonumber(redis.call('HGET', k_sess(sid), 'trimmed') or '0')
  if idx < 0 then return false end
  local mkey = k_msgs(sid)
  local raw = redis.call('LINDEX', mkey, idx)
  if not raw then return false end
  local ok, m = pcall(cjson.decode, raw)
  if not ok or type(m) ~= 'table' or m.id ~= mid then return false end
  if type(m.metadata) ~= 'table' then m.metadata = {} end
  m.metadata.delivery_status = status
  m.metadata.delivery_updated_at = at
  if code ~= '' then m.metadata.error_code = code end
  redis.call('LSET', mkey, idx, cjson.encode(m))
  return true
end

-- Maps a committed reply's Twilio MessageSid to its stored message. Status callbacks may have
-- come first: the furthest status recorded so far wins over the one Twilio's create returned.
local function map_outbound(msid, sid, mid, pos, status, keep_ms, at)
  local okey = k_out(msid)
  local h = redis.call('HMGET', okey, 'rank', 'status', 'error_code')
  redis.call('HSET', okey, 'sess', sid, 'mid', mid, 'pos', pos)
  redis.call('PEXPIRE', okey, keep_ms)
  local rank = R[status] or 0
  if h[1] and tonumber(h[1]) >= rank then
    set_delivery(sid, pos, mid, h[2], h[3] or '', at)
  else
    redis.call('HSET', okey, 'status', status, 'rank', rank)
  end
end

local function carry_from(argv, first)
  local carry = {}
  local n = tonumber(argv[first])
  for i = 1, n do carry[i] = argv[first + i] end
  return carry
end
"""

# ARGV: conv, ts, now, new_sid, timeout_ms, cap, keep_ms, direction, type, msg, ncarry, carry...
_APPLY_MESSAGE = r"""
local r = apply_message(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]),
  tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10], carry_from(ARGV, 11))
return r
"""

# ARGV: conv, new_sid, ts, timeout_ms, keep_ms, initial_msg ('' for none), ctx pairs...
_CREATE_SESSION = r"""
local conv = ARGV[1]
local sid, expired = current_session(conv, tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[3]), tonumber(ARGV[5]))
if sid then return {'exists', sid} end
open_session(conv, ARGV[2], tonumber(ARGV[3]), {})
local skey = k_sess(ARGV[2])
for i = 7, #ARGV, 2 do redis.call('HSET', skey, ARGV[i], ARGV[i + 1]) end
if ARGV[6] ~= '' then append(ARGV[2], ARGV[6], 'inbound', 'text', tonumber(ARGV[3]), 1e18) end
return {'created', ARGV[2], expired or ''}
"""

# ARGV: sid, trigger, now, keep_ms, reason
_END_SESSION = r"""
local ok, st = end_session(ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[5], tonumber(ARGV[4]))
if ok then return {'ok', st} end
if st == 'missing' then return {'missing', ''} end
return {'invalid', st}
"""

# Lazily expires the conversation's active session when idle past timeout; returns its id or ''.
# ARGV: conv, now, timeout_ms, keep_ms
_READ_ACTIVE = r"""
local sid, expired = current_session(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[2]), tonumber(ARGV[4]), true)
return {sid or '', expired or ''}
"""

# Same for one session id. ARGV: sid, now, timeout_ms, keep_ms. Returns 1 when it expired it.
_EXPIRE_IF_IDLE = r"""
local h = redis.call('HMGET', k_sess(ARGV[1]), 'status', 'last', 'conv')
if h[1] == 'active' and tonumber(h[2]) + tonumber(ARGV[3]) <= tonumber(ARGV[2])
    and redis.call('LLEN', k_conv(h[3], 'inbox')) == 0 then
  end_session(ARGV[1], 'expire', tonumber(ARGV[2]), 'timeout', tonumber(ARGV[4]))
  return 1
end
return 0
"""

# ARGV: sid, nset, (field, value)*, ndel, field*
_UPDATE_FIELDS = r"""
local skey = k_sess(ARGV[1])
if redis.call('EXISTS', skey) == 0 then return 0 end
local nset = tonumber(ARGV[2])
local i = 3
for _ = 1, nset do
  redis.call('HSET', skey, ARGV[i], ARGV[i + 1])
  i = i + 2
end
local ndel = tonumber(ARGV[i])
for j = 1, ndel do redis.call('HDEL', skey, ARGV[i + j]) end
return 1
"""

# Expires active sessions idle past the timeout, skipping conversations whose inbox still holds
# entries (those entries carry their arrival time and decide for themselves).
# ARGV: now, timeout_ms, keep_ms, limit, offset (how many earlier candidates were skipped and
# are still in the index). Returns expired ids, the number examined and the number skipped.
_EXPIRE_IDLE = r"""
local now, timeout_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', now - timeout_ms, 'LIMIT',
  tonumber(ARGV[5]), tonumber(ARGV[4]))
local out = {}
local skipped = 0
for _, sid in ipairs(ids) do
  local h = redis.call('HMGET', k_sess(sid), 'status', 'last', 'conv')
  if h[1] ~= 'active' then
    redis.call('ZREM', K_ACTIVE, sid)
  elseif tonumber(h[2]) + timeout_ms <= now
      and redis.call('LLEN', k_conv(h[3], 'inbox')) == 0 then
    end_session(sid, 'expire', now, 'timeout', tonumber(ARGV[3]))
    table.insert(out, sid)
  else
    skipped = skipped + 1
  end
end
return {out, #ids, skipped}
"""

# Drops ended sessions older than the retention period from every index and deletes them.
# ARGV: cutoff_ms, limit
_PURGE = r"""
local ids = redis.call('ZRANGEBYSCORE', K_ENDED, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, sid in ipairs(ids) do
  local h = redis.call('HMGET', k_sess(sid), 'conv', 'status')
  if h[1] then redis.call('ZREM', k_conv(h[1], 'sessions'), sid) end
  redis.call('ZREM', K_ALL, sid)
  redis.call('ZREM', k_status('completed'), sid)
  redis.call('ZREM', k_status('expired'), sid)
  redis.call('DEL', k_sess(sid), k_msgs(sid))
  redis.call('ZREM', K_ENDED, sid)
end
return #ids
"""

# The webhook's one round trip: dedupe, append to the conversation's inbox, and enqueue a drain
# wake-up unless one is already queued or running.
# Dedupe markers are fields of small hashes, one per time bucket (a day) and MessageSid shard
# (its last 3 characters): ``<seen_prefix><bucket>:<shard>`` -> {rest of the sid: ''}. A marker
# is looked up in every bucket the dedupe period covers; each bucket expires a dedupe period
# after it closes. Small hashes are listpacks: ~35 bytes a marker instead of ~130 for a key.
# With the Dramatiq queue's keys and message, the wake-up is enqueued here, as Dramatiq's own
# dispatch script does (``HSET <queue>.msgs <id> <message>``, ``RPUSH <queue> <id>``), saving the
# webhook a second round trip; without them the caller enqueues it.
# The wake flag lives ``wake:ttl`` ms when the re-drive pass has set it (Dramatiq's queue is
# backed up), else ``wake_ttl_ms`` (a lease period).
# KEYS: inbox, wake, pending, wake ttl[, queue, queue messages]. ARGV: entry, message_sid, conv,
# accepted_ms, max_depth, wake_ttl_ms, seen_prefix, bucket_ms, dedupe_ttl_ms[, wake id, wake
# message]. Returns 0 duplicate, -1 inbox full, 1 accepted, 2 accepted and a wake-up needed,
# 3 accepted and a wake-up enqueued.
_INGEST = r"""
local sid = ARGV[2]
local bucket_ms, ttl_ms = tonumber(ARGV[8]), tonumber(ARGV[9])
local shard = ':' .. string.sub(sid, -3)
local field = string.sub(sid, 1, -4)
local accepted = tonumber(ARGV[4])
local bucket = math.floor(accepted / bucket_ms)
for b = bucket - math.ceil(ttl_ms / bucket_ms), bucket do
  if redis.call('HEXISTS', ARGV[7] .. b .. shard, field) == 1 then return 0 end
end
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[5]) then return -1 end
local seen = ARGV[7] .. bucket .. shard
if redis.call('HSET', seen, field, '') == 1 and redis.call('HLEN', seen) == 1 then
  -- Relative to the acceptance clock, not Redis' (the two may differ: tests, clock skew).
  redis.call('PEXPIRE', seen, string.format('%d', (bucket + 1) * bucket_ms + ttl_ms - accepted))
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[3])
local wake_ttl = redis.call('GET', KEYS[4]) or ARGV[6]
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', wake_ttl) then return 1 end
if ARGV[10] then
  redis.call('HSET', KEYS[6], ARGV[10], ARGV[11])
  redis.call('RPUSH', KEYS[5], ARGV[10])
  return 3
end
return 2
"""

# Appends an operator entry without dedupe. KEYS: inbox, wake, pending, wake ttl. ARGV: entry,
# conv, accepted_ms, wake_ttl_ms. Returns 1 accepted, 2 accepted and wake needed.
_PUSH_OP = r"""
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[2])
local wake_ttl = redis.call('GET', KEYS[4]) or ARGV[4]
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', wake_ttl) then return 2 end
return 1
"""

# One step of a conversation's drain, in one round trip: take the lease (or check that it is
# still ours), commit the effects of the records the drain has run, then hand out what comes next
# (the effects list's head while records are pending, else a batch of the inbox, applied here)
# or give the lease up when nothing is left. Everything is fenced by the lease token, and the
# committed records must be the effects list's head, in order.
#
# Applying: entries are applied in acceptance order and popped in the same step (exactly once).
# With effects on, an inbound text or image message also appends its record (``<sid>\t<message
# JSON>``) to the effects list; the batch then stops before any entry that could end the session
# of those records (an operator complete or expire, or a message accepted a timeout or more
# after them), so their effects find it still active. Nothing is applied while records are
# pending: a drain finishes those first. Sessions opened here get the ids that follow ``id_base``
# (a random UUID from the caller) in its last four hex digits: one random id serves a drain's
# sessions (the caller passes the last id used; a step stops before the counter would wrap).
#
# KEYS: lease, wake, inbox, pending, effects.
# ARGV: mode ('acquire': take the lease with SET NX; else the token must hold it), token,
# lease_ms, batch, conv, now, timeout_ms, cap, keep_ms, effects ('1'/'0'), at (ISO time, for
# delivery statuses met at commit), history (messages before the records to return per
# session), id_base, then ncarry, carry..., nrec, record..., ngroup, and per group: sid,
# set_order ('1'/'0'), order JSON, nmsg, then per message: direction, type, ts, JSON, id,
# Twilio MessageSid ('' for none), delivery status.
# Returns {'busy'} (acquire: another drain holds the lease), {'lease'}, {'head'}, or {'ok',
# released, per committed group 'ok' or 'ended' (ended meanwhile: only popped), per applied entry
# status, kind, a, b, accepted_ms, sid, created, detail, the pending records (up to batch), per
# session of those records {sid, status, order, last_in, phone, biz, its last messages (history
# plus those appended since; a record's own message as its 1-based index in the records)}}.
_DRAIN_STEP = r"""
local token, lease_ms, batch, conv = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
if ARGV[1] == 'acquire' then
  if not redis.call('SET', KEYS[1], token, 'NX', 'PX', lease_ms) then return {'busy'} end
  redis.call('DEL', KEYS[2])
elseif redis.call('GET', KEYS[1]) ~= token then
  return {'lease'}
end
local now, timeout_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local cap, keep_ms, history = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[12])
local id_prefix, id_last = string.sub(ARGV[13], 1, -5), tonumber(string.sub(ARGV[13], -4), 16)
local pos = 13
local function take_list()
  local t = {}
  pos = pos + 1
  for j = 1, tonumber(ARGV[pos]) do t[j] = ARGV[pos + j] end
  pos = pos + #t
  return t
end
local carry = take_list()
local done = take_list()

-- Commit the effects of the records run since the last step.
if #done > 0 then
  local head = redis.call('LRANGE', KEYS[5], 0, #done - 1)
  for j = 1, #done do
    if head[j] ~= done[j] then return {'head'} end
  end
end
local committed = {}
pos = pos + 1
for g = 1, tonumber(ARGV[pos]) do
  local sid, nmsg = ARGV[pos + 1], tonumber(ARGV[pos + 4])
  local skey = k_sess(sid)
  local live = T[tostring(redis.call('HGET', skey, 'status')) .. '|receive'] == 'active'
  if live and ARGV[pos + 2] == '1' then redis.call('HSET', skey, 'order', ARGV[pos + 3]) end
  pos = pos + 4
  for _ = 1, nmsg do
    if live then
      local err, where = append(sid, ARGV[pos + 4], ARGV[pos + 1], ARGV[pos + 2],
        tonumber(ARGV[pos + 3]), cap)
      if err then return err end
      if ARGV[pos + 6] ~= '' then
        map_outbound(ARGV[pos + 6], sid, ARGV[pos + 5], where, ARGV[pos + 7], keep_ms, ARGV[11])
      end
    end
    pos = pos + 7
  end
  committed[g] = live and 'ok' or 'ended'
end
if #done > 0 then redis.call('LTRIM', KEYS[5], #done, -1) end

-- What is next: pending records, else a batch of the inbox.
local pending = redis.call('LRANGE', KEYS[5], 0, batch - 1)
local results, appended = {}, {}
local applied = 0
local function flush()
  -- One LPOP per applied entry (not one LTRIM): each is a keyspace event at the moment its
  -- entry was applied, which is what the benchmark's lag probe times (bench/lagprobe.py).
  for _ = 1, applied do redis.call('LPOP', KEYS[3]) end
  if #pending > 0 then redis.call('RPUSH', KEYS[5], unpack(pending)) end
end
if #pending == 0 then
  local opened, since = 0, nil
  for _, entry in ipairs(redis.call('LRANGE', KEYS[3], 0, batch - 1)) do
    local ts, kind, a, b, payload =
      string.match(entry, '^(%d+)\t(%a)\t([^\t]*)\t([^\t]*)\t(.*)$')
    local t = tonumber(ts)
    -- `since`: the latest message time since the first record (its session's last activity
    -- is at least that).
    if since and (kind ~= 'm' or t - since >= timeout_ms) then break end
    if kind == 'm' and id_last + opened >= 65535 then break end
    local status, sid, created, detail = 'ok', '', 0, ''
    if not ts then
      status, kind, a, b, ts, detail = 'bad', '?', '', '', '0', 'malformed entry'
    elseif kind == 'm' then
      local new_sid = id_prefix .. string.format('%04x', id_last + opened + 1)
      local r = apply_message(conv, t, now, new_sid, timeout_ms, cap, keep_ms, a, b, payload,
        carry)
      if r.err then
        flush()
        return r
      end
      sid, created, detail = r[1], r[2], r[3]
      opened = opened + created
      appended[sid] = (appended[sid] or 0) + 1
      if ARGV[10] == '1' and a == 'inbound' and (b == 'text' or b == 'image') then
        pending[#pending + 1] = sid .. '\t' .. payload
      end
      if #pending > 0 and (not since or t > since) then since = t end
    else
      local trigger = (kind == 'c') and 'complete' or 'expire'
      sid = a
      if sid == '' then sid = redis.call('GET', k_conv(conv, 'active')) or '' end
      if sid ~= '' and redis.call('HGET', k_sess(sid), 'conv') ~= conv then sid = '' end
      if sid == '' then
        detail = 'missing'
      else
        -- A session idle past the timeout when the operator asked has already expired.
        local h = redis.call('HMGET', k_sess(sid), 'status', 'last')
        if h[1] == 'active' and tonumber(h[2]) + timeout_ms <= t then
          end_session(sid, 'expire', now, 'timeout', keep_ms)
          detail = 'invalid:expired'
        else
          local ok, st = end_session(sid, trigger, now, payload, keep_ms)
          detail = ok and st or ('invalid:' .. st)
        end
      end
    end
    applied = applied + 1
    local n = #results
    results[n + 1], results[n + 2], results[n + 3], results[n + 4] = status, kind, a, b
    results[n + 5], results[n + 6], results[n + 7], results[n + 8] = ts, sid, created, detail
  end
  flush()
end

local remaining = redis.call('LLEN', KEYS[3])
local released = 0
if remaining == 0 and #pending == 0 then
  redis.call('ZREM', KEYS[4], conv)
  redis.call('DEL', KEYS[1], KEYS[2])
  released = 1
else
  -- Records pending with an empty inbox: the conversation stays leased and pending.
  redis.call('PEXPIRE', KEYS[1], lease_ms)
  if remaining > 0 and applied > 0 then
    local next_ts = string.match(redis.call('LINDEX', KEYS[3], 0), '^(%d+)')
    if next_ts then redis.call('ZADD', KEYS[4], 'XX', next_ts, conv) end
  end
end

-- What the records' effects need of their sessions, read here rather than in another trip.
local sessions, index, counts = {}, {}, {}
for j, record in ipairs(pending) do
  local sid, payload = string.match(record, '^([^\t]*)\t(.*)$')
  if not index[sid] then
    index[sid], counts[sid] = {}, 0
    sessions[#sessions + 1] = sid
  end
  index[sid][payload] = j
  counts[sid] = counts[sid] + 1
end
for k, sid in ipairs(sessions) do
  local h = redis.call('HMGET', k_sess(sid), 'status', 'order', 'last_in', 'phone', 'biz')
  local tail = {}
  if history > 0 then
    local n = history + (appended[sid] or counts[sid])
    for _, raw in ipairs(redis.call('LRANGE', k_msgs(sid), -n, -1)) do
      tail[#tail + 1] = index[sid][raw] or raw
    end
  end
  sessions[k] = {sid, h[1], h[2], h[3], h[4], h[5], tail}
end
return {'ok', released, committed, results, pending, sessions}
"""

# Lengthens the lease before a slow external call, if it is still ours.
# KEYS: lease. ARGV: token, lease_ms. Returns 1 when extended.
_EXTEND_LEASE = r"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# One Twilio status callback: deduplicated on MessageSid plus status, and applied only when it
# moves the reply's status forward. A callback that beats the commit of its reply is kept (for
# a day) and applied by ``map_outbound`` when the reply is committed.
# ARGV: MessageSid, status, error code ('' for none), at (ISO time), unmapped_ttl_ms.
# Returns {outcome}: duplicate, stale, unknown (not mapped yet) or applied.
_DELIVERY_STATUS = r"""
local okey = k_out(ARGV[1])
local status = ARGV[2]
if redis.call('HSETNX', okey, 'seen:' .. status, '1') == 0 then return {'duplicate'} end
local h = redis.call('HMGET', okey, 'rank', 'sess', 'pos', 'mid')
if not h[2] and redis.call('PTTL', okey) < 0 then redis.call('PEXPIRE', okey, ARGV[5]) end
local rank = R[status] or 0
if h[1] and tonumber(h[1]) >= rank then return {'stale'} end
redis.call('HSET', okey, 'status', status, 'rank', rank)
if ARGV[3] ~= '' then redis.call('HSET', okey, 'error_code', ARGV[3]) end
if not h[2] then return {'unknown'} end
set_delivery(h[2], h[3], h[4], status, ARGV[3], ARGV[4])
return {'applied'}
"""

# Conversations that need a drain and have none: inbox or effects non-empty, no lease, no wake
# queued. Marks each as woken so the next pass does not wake it again. First records how long
# wake flags live from now on (``wake:ttl``, for ``hold_ms``): longer than a wake-up waits in
# Dramatiq's queue, or every message of a backed-up phone would queue another wake-up.
# ARGV: wake_ttl_ms, limit, hold_ms.
_REDRIVE = r"""
redis.call('SET', K_WAKE_TTL, ARGV[1], 'PX', ARGV[3])
local convs = redis.call('ZRANGE', K_PENDING, 0, tonumber(ARGV[2]) - 1)
local out = {}
for _, conv in ipairs(convs) do
  if redis.call('LLEN', k_conv(conv, 'inbox')) == 0
      and redis.call('LLEN', k_conv(conv, 'effects')) == 0 then
    if redis.call('EXISTS', k_conv(conv, 'lease')) == 0 then
      redis.call('ZREM', K_PENDING, conv)
    end
  elseif redis.call('EXISTS', k_conv(conv, 'lease')) == 0
      and redis.call('SET', k_conv(conv, 'wake'), '1', 'NX', 'PX', ARGV[1]) then
    table.insert(out, conv)
  end
end
return out
"""


def _lua_table() -> str:
    items = ", ".join(
        f"['{state}|{trigger}']='{dest}'" for (state, trigger), dest in transition_table().items()
    )
    ranks = ", ".join(f"['{status}']={rank}" for status, rank in DELIVERY_RANK.items())
    return f"local T = {{{items}}}\nlocal R = {{{ranks}}}\n"


def build(keys: Keys) -> dict[str, str]:
    """Script sources by name, each with the key prelude and the lifecycle table."""
    head = keys.lua_prelude() + _lua_table() + _CORE
    bodies = {
        "apply_message": _APPLY_MESSAGE,
        "create_session": _CREATE_SESSION,
        "end_session": _END_SESSION,
        "read_active": _READ_ACTIVE,
        "expire_if_idle": _EXPIRE_IF_IDLE,
        "update_fields": _UPDATE_FIELDS,
        "expire_idle": _EXPIRE_IDLE,
        "purge": _PURGE,
        "ingest": _INGEST,
        "push_op": _PUSH_OP,
        "drain_step": _DRAIN_STEP,
        "extend_lease": _EXTEND_LEASE,
        "delivery_status": _DELIVERY_STATUS,
        "redrive": _REDRIVE,
    }
    # Scripts that touch only their KEYS skip the prelude: it is Lua run on every call, and the
    # webhook's ingest is the hottest script of all.
    return {name: body if name in _STANDALONE else head + body for name, body in bodies.items()}


_STANDALONE = frozenset({"ingest", "push_op", "extend_lease"})
