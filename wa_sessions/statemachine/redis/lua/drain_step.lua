-- drain_step: one step of a conversation's drain, in one round trip. Takes the lease (or checks
-- that it is still ours), commits the effects of the records the drain has run, then hands out
-- what comes next (the effects list's head while records are pending, else a batch of the
-- inbox, applied here) or gives the lease up when nothing is left. Everything is fenced by the
-- lease token, and the committed records must be the effects list's head, in order. A step
-- that applied or committed anything publishes the conversation on the console's channel.
-- Committing writes order.updated for a changed order and message.failed for a failure note
-- to the outbox (lua/lib/outbox.lua).
--
-- Applying: entries are applied in acceptance order and popped in the same step (exactly once).
-- With effects on, an inbound text or image message also appends its record (<sid>\t<message
-- JSON>) to the effects list, unless an operator has taken its session over or it was accepted
-- before the session was last handed back; an operator's reply to an active session appends
-- its outbound message's record and ends the batch (the reply is stored before the messages
-- accepted after it). The batch stops before any entry that could end the
-- session of those records (an operator entry, or a message accepted a timeout or more after
-- them), so their effects find it still active. Nothing is applied while records are
-- pending: a drain finishes those first. Sessions opened here get the ids that follow id_base
-- (a random UUID from the caller) in its last four hex digits: one random id serves a drain's
-- sessions (the caller passes the last id used; a step stops before the counter would wrap).
--
-- Uses: rollups, outbox, sessions, delivery
-- KEYS:
--   lease                 the conversation's lease
--   wake                  the conversation's wake flag
--   inbox                 the conversation's inbox
--   pending               the index of conversations with work waiting
--   effects               the conversation's pending effect records
-- ARGV:
--   acquire         flag  take the lease (SET NX); else the token must hold it
--   token           str   the drain's lease token
--   lease_ms        str   the lease's TTL
--   batch           int   entries (or records) per step
--   conv            str   the conversation
--   now             int   the drain's clock (ms)
--   timeout_ms      int   inactivity before a session expires
--   cap             int   messages kept per session
--   keep_ms         int   how long an ended session's keys live
--   effects         flag  applying an inbound text or image message queues its effects
--   history         int   messages before the records to return per session
--   id_base         str   the last session id used (a UUID counted up in its last 4 digits)
--   carry           json  context keys copied into a conversation's next session
--   commit?         json  the effects of the records run since the last step:
--                         {records: [record], at: ISO time for delivery statuses met here,
--                          sessions: [{sid, order (JSON text, absent: unchanged),
--                          messages: [{direction, type, ts, json, id, twilio_sid, status,
--                          passive (true: not activity, the nudge),
--                          failed (a failure note: the message.failed event's JSON data)}],
--                          context: {name: JSON text} context keys to store,
--                          flow, flow_step: the flow's new position (absent: unchanged),
--                          complete: true to complete the session after its messages,
--                          opt_out: true when the customer sent STOP (kept for good),
--                          waits: [ms from each answered message's acceptance to its reply]}]}
-- Returns {'busy'} (acquire: another drain holds the lease), {'lease'}, {'head'}, or {'ok',
-- released, per committed group 'ok' or 'ended' (ended meanwhile: only popped), per applied
-- entry status, kind, a, b, accepted_ms, sid, created, detail, the pending records (up to
-- batch), per session of those records {sid, status, order, last_in, phone, biz, its last
-- messages (history plus those appended since; a record's own message as its 1-based index in
-- the records), the operator holding it or nil, its ctx:language and ctx:language_candidate
-- (JSON text or nil), the conversation's language override or nil, its flow and flow step or
-- nil}}.

-- Takes the lease or checks it. Returns the refusal ('busy', 'lease') or nil.
local function hold_lease()
  if ARG.acquire then
    if not redis.call('SET', KEY.lease, ARG.token, 'NX', 'PX', ARG.lease_ms) then
      return 'busy'
    end
    redis.call('DEL', KEY.wake)
  elseif redis.call('GET', KEY.lease) ~= ARG.token then
    return 'lease'
  end
end

-- Stores the outcome of the records run since the last step and pops them. Returns 'ok' or
-- 'ended' per session, or nil and a refusal ('head') or an error reply.
local function commit_effects(commit)
  local committed = {}
  if not commit then return committed end
  local records = commit.records
  if #records > 0 then
    local head = redis.call('LRANGE', KEY.effects, 0, #records - 1)
    for j = 1, #records do
      if head[j] ~= records[j] then return nil, 'head' end
    end
  end
  for g, group in ipairs(commit.sessions) do
    local sid = group.sid
    local skey = k_sess(ARG.conv, sid)
    local live = T[tostring(redis.call('HGET', skey, S.status)) .. '|receive'] == 'active'
    -- An opt-out holds even when its session ended meanwhile.
    if group.opt_out then redis.call('SET', k_optout(ARG.conv), ARG.now) end
    if live then
      if type(group.order) == 'string' then
        redis.call('HSET', skey, S.order, group.order)
        outbox_add('order.updated', ARG.conv, sid, ARG.now, group.order)
      end
      for name, value in pairs(group.context or {}) do
        redis.call('HSET', skey, S.context .. name, value)
      end
      for _, m in ipairs(group.messages) do
        local err, where = append(ARG.conv, sid, m.json, m.direction, m.type, m.ts, ARG.cap,
          m.passive)
        if err then return nil, err end
        if m.failed then outbox_add('message.failed', ARG.conv, sid, m.ts, m.failed) end
        if m.twilio_sid ~= '' then
          map_outbound(m.twilio_sid, ARG.conv, sid, m.id, where, m.status, ARG.keep_ms, commit.at,
            ARG.now)
        end
      end
      if type(group.flow) == 'string' then
        redis.call('HSET', skey, S.flow, group.flow, S.flow_step, group.flow_step)
      end
      for _, wait_ms in ipairs(group.waits or {}) do
        rollup_add(biz_of(ARG.conv), ARG.now, A.reply .. rollup_bucket(RB_REPLY, wait_ms), 1)
      end
      -- The flow's last step answered: completed as an operator's complete would, after its
      -- reply; what the inbox holds after it opens the next session.
      if group.complete then
        end_session(ARG.conv, sid, 'complete', ARG.now, 'flow', ARG.keep_ms)
      end
    end
    committed[g] = live and 'ok' or 'ended'
  end
  if #records > 0 then redis.call('LTRIM', KEY.effects, #records, -1) end
  return committed
end

-- Whether applying an inbound message to `sid` at `t` queues its effects: not while an operator
-- holds the session, nor for a message accepted before its last hand-back.
local function auto_reply(sid, t)
  local h = redis.call('HMGET', k_sess(ARG.conv, sid), S.taken_over_by, S.handed_back_at)
  return not h[1] and (not h[2] or t >= tonumber(h[2]))
end

-- An operator's reply to `sid`: queued as an effect record while the session is active (its
-- effects re-check the takeover and the window right before the send). Returns the outcome.
local function apply_reply(sid, payload, pending)
  local status = false
  if sid ~= '' then status = redis.call('HGET', k_sess(ARG.conv, sid), S.status) end
  if not status then return 'missing' end
  if status ~= 'active' then return 'invalid:' .. status end
  if not ARG.effects then return 'dropped' end
  pending[#pending + 1] = sid .. '\t' .. payload
  return 'queued'
end

-- An operator's complete or expire of `target` (empty: the active session) at `t`.
-- Returns the session it applied to ('' if none) and the outcome.
local function apply_operation(kind, target, t, reason)
  local trigger = (kind == ENTRY.complete) and 'complete' or 'expire'
  local sid = target
  if sid == '' then sid = redis.call('GET', k_active(ARG.conv)) or '' end
  if sid ~= '' and redis.call('EXISTS', k_sess(ARG.conv, sid)) == 0 then sid = '' end
  if sid == '' then return '', 'missing' end
  -- A session idle past the timeout when the operator asked has already expired.
  local h = redis.call('HMGET', k_sess(ARG.conv, sid), S.status, S.last_activity)
  if h[1] == 'active' and tonumber(h[2]) + ARG.timeout_ms <= t then
    end_session(ARG.conv, sid, 'expire', ARG.now, 'timeout', ARG.keep_ms)
    return sid, 'invalid:expired'
  end
  local ok, st = end_session(ARG.conv, sid, trigger, ARG.now, reason, ARG.keep_ms)
  return sid, ok and st or ('invalid:' .. st)
end

-- Applies a batch of the inbox head, queueing effect records into `pending`; pops what it
-- applied. Returns the flat results and the messages appended per session, or nil and an
-- error reply.
local function apply_batch(pending)
  local results, appended = {}, {}
  local applied, opened, since = 0, 0, nil
  local id_prefix = string.sub(ARG.id_base, 1, -5)
  local id_last = tonumber(string.sub(ARG.id_base, -4), 16)
  local function flush()
    -- One LPOP per applied entry (not one LTRIM): each is a keyspace event at the moment its
    -- entry was applied, which is what the benchmark's lag probe times (bench/lagprobe.py).
    for _ = 1, applied do redis.call('LPOP', KEY.inbox) end
    if #pending > 0 then redis.call('RPUSH', KEY.effects, unpack(pending)) end
  end
  for _, entry in ipairs(redis.call('LRANGE', KEY.inbox, 0, ARG.batch - 1)) do
    local ts, kind, a, b, payload =
      string.match(entry, '^(%d+)\t(%a)\t([^\t]*)\t([^\t]*)\t(.*)$')
    local t = tonumber(ts)
    -- `since`: the latest message time since the first record (its session's last activity
    -- is at least that).
    if since and (kind ~= ENTRY.message or t - since >= ARG.timeout_ms) then break end
    if kind == ENTRY.message and id_last + opened >= 65535 then break end
    local status, sid, created, detail, last = 'ok', '', 0, '', false
    if not ts or (kind ~= ENTRY.message and kind ~= ENTRY.complete and kind ~= ENTRY.expire
        and kind ~= ENTRY.operator_reply) then
      -- Unparsable, or of a kind nobody writes: dropped, never guessed at.
      status, kind, a, b, ts, detail = 'bad', ENTRY.malformed, '', '', '0', 'malformed entry'
    elseif kind == ENTRY.message then
      local new_sid = id_prefix .. string.format('%04x', id_last + opened + 1)
      local r = apply_message(ARG.conv, t, ARG.now, new_sid, ARG.timeout_ms, ARG.cap,
        ARG.keep_ms, a, b, payload, ARG.carry)
      if r.err then
        flush()
        return nil, r
      end
      sid, created, detail = r[1], r[2], r[3]
      opened = opened + created
      appended[sid] = (appended[sid] or 0) + 1
      if ARG.effects and a == 'inbound' and (b == 'text' or b == 'image')
          and auto_reply(sid, t) then
        pending[#pending + 1] = sid .. '\t' .. payload
      end
      if #pending > 0 and (not since or t > since) then since = t end
    elseif kind == ENTRY.operator_reply then
      -- Applied only with no record pending in this batch (it stops before operator entries);
      -- a queued reply ends the batch, so it is stored before the messages accepted after it.
      sid, detail = a, apply_reply(a, payload, pending)
      last = #pending > 0
    else
      sid, detail = apply_operation(kind, a, t, payload)
    end
    applied = applied + 1
    local n = #results
    results[n + 1], results[n + 2], results[n + 3], results[n + 4] = status, kind, a, b
    results[n + 5], results[n + 6], results[n + 7], results[n + 8] = ts, sid, created, detail
    if last then break end
  end
  flush()
  return results, appended
end

-- Gives the lease up when nothing is left, else extends it and keeps the conversation's place
-- in the pending index at its oldest waiting entry. Returns 1 when released.
local function release_or_extend(applied, pending)
  local remaining = redis.call('LLEN', KEY.inbox)
  if remaining == 0 and #pending == 0 then
    redis.call('ZREM', KEY.pending, ARG.conv)
    redis.call('DEL', KEY.lease, KEY.wake)
    return 1
  end
  -- Records pending with an empty inbox: the conversation stays leased and pending.
  redis.call('PEXPIRE', KEY.lease, ARG.lease_ms)
  if remaining > 0 and applied > 0 then
    local next_ts = string.match(redis.call('LINDEX', KEY.inbox, 0), '^(%d+)')
    if next_ts then redis.call('ZADD', KEY.pending, 'XX', next_ts, ARG.conv) end
  end
  return 0
end

-- What the records' effects need of their sessions, read here rather than in another trip.
local function effect_sessions(pending, appended)
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
  local override = #sessions > 0 and redis.call('GET', k_lang(ARG.conv)) or false
  for k, sid in ipairs(sessions) do
    local h = redis.call('HMGET', k_sess(ARG.conv, sid), S.status, S.order, S.last_inbound,
      S.phone, S.business, S.taken_over_by, S.context .. CTX.language,
      S.context .. CTX.language_candidate, S.flow, S.flow_step)
    local tail = {}
    if ARG.history > 0 then
      local n = ARG.history + (appended[sid] or counts[sid])
      for _, raw in ipairs(redis.call('LRANGE', k_msgs(ARG.conv, sid), -n, -1)) do
        tail[#tail + 1] = index[sid][raw] or raw
      end
    end
    sessions[k] = {sid, h[1], h[2], h[3], h[4], h[5], tail, h[6], h[7], h[8], override, h[9],
      h[10]}
  end
  return sessions
end

local refused = hold_lease()
if refused then return {refused} end
local committed, failed = commit_effects(ARG.commit)
if not committed then
  if type(failed) == 'string' then return {failed} end
  return failed
end
local pending = redis.call('LRANGE', KEY.effects, 0, ARG.batch - 1)
local results, appended = {}, {}
if #pending == 0 then
  results, appended = apply_batch(pending)
  if not results then return appended end
end
local released = release_or_extend(#results / 8, pending)
-- The console's live views re-read the conversation (one PUBLISH per step that changed it;
-- without subscribers it costs a lookup in an empty table).
if #results > 0 or #committed > 0 then redis.call('PUBLISH', K_CONSOLE_CHANNEL, ARG.conv) end
return {'ok', released, committed, results, pending, effect_sessions(pending, appended)}
