-- Library: the outbox. One XADD on the outbox stream per lifecycle event (a session opened or
-- ended, an order updated, a message failed), in the same script as the change, so the event
-- and the change are one atomic step (docs/ARCHIVE.md). Plain messages add nothing. Needs the
-- prelude (K_OUTBOX); hash fields are written S.<field>, the loader puts in the names.

local OB_DAY_MS = 86400000

-- Epoch ms as an ISO 8601 UTC time with milliseconds (days to civil date: H. Hinnant's
-- algorithm), as the session API writes times.
local function ob_iso(ms)
  local t = tonumber(ms)
  local days = math.floor(t / OB_DAY_MS)
  local rem = t - days * OB_DAY_MS
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  local h = math.floor(rem / 3600000)
  local mi = math.floor((rem % 3600000) / 60000)
  local s = math.floor((rem % 60000) / 1000)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, h, mi, s, rem % 1000)
end

local function ob_str(v)
  if not v or v == '' then return 'null' end
  return cjson.encode(v)
end

local function ob_time(v)
  if not v or v == '' then return 'null' end
  return '"' .. ob_iso(v) .. '"'
end

-- The session as the session API's SessionView shows it (without messages), as JSON text:
-- stored JSON values (order, context) are copied in as they are, never re-encoded.
local function ob_session_json(conv, sid, at)
  local flat = redis.call('HGETALL', k_sess(conv, sid))
  local h, ctx = {}, {}
  local cp = S.context
  for i = 1, #flat, 2 do
    local f = flat[i]
    if string.sub(f, 1, #cp) == cp then
      ctx[#ctx + 1] = cjson.encode(string.sub(f, #cp + 1)) .. ':' .. flat[i + 1]
    else
      h[f] = flat[i + 1]
    end
  end
  local last_in = h[S.last_inbound]
  local closes = last_in and (tonumber(last_in) + OB_DAY_MS) or nil
  local window = '{"open":' .. tostring(closes ~= nil and at < closes) .. ',"last_inbound_at":'
    .. ob_time(last_in) .. ',"closes_at":' .. ob_time(closes) .. '}'
  return '{"session_id":' .. ob_str(sid) .. ',"phone_number":' .. ob_str(h[S.phone])
    .. ',"business_number":' .. ob_str(h[S.business]) .. ',"status":' .. ob_str(h[S.status])
    .. ',"created_at":' .. ob_time(h[S.created]) .. ',"last_activity":'
    .. ob_time(h[S.last_activity]) .. ',"last_inbound_at":' .. ob_time(last_in)
    .. ',"ended_at":' .. ob_time(h[S.ended]) .. ',"end_reason":' .. ob_str(h[S.end_reason])
    .. ',"message_count":' .. tonumber(h[S.message_count] or '0')
    .. ',"trimmed_count":' .. tonumber(h[S.trimmed] or '0')
    .. ',"order_details":' .. (h[S.order] or 'null')
    .. ',"context":{' .. table.concat(ctx, ',') .. '}'
    .. ',"window":' .. window
    .. ',"taken_over_by":' .. ob_str(h[S.taken_over_by])
    .. ',"taken_over_at":' .. ob_time(h[S.taken_over_at]) .. '}'
end

-- Appends one event; returns its stream id.
local function outbox_add(kind, conv, sid, at, data)
  return redis.call('XADD', K_OUTBOX, '*', 'type', kind, 'session_id', sid, 'conv', conv,
    'at', tostring(at), 'data', data)
end

-- session.started / session.completed / session.expired with the session's view.
local function outbox_session(kind, conv, sid, at)
  return outbox_add(kind, conv, sid, at, ob_session_json(conv, sid, at))
end

-- A stream id as two numbers.
local function outbox_id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

-- Whether stream id `a` comes before `b`.
local function outbox_id_before(a, b)
  local a_ms, a_seq = outbox_id_parts(a)
  local b_ms, b_seq = outbox_id_parts(b)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end

-- The consumer groups of the outbox: {name = last-delivered-id}.
local function outbox_groups()
  local groups = {}
  if redis.call('EXISTS', K_OUTBOX) == 0 then return groups end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', K_OUTBOX)) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    groups[info['name']] = info['last-delivered-id']
  end
  return groups
end

-- The first outbox id that `group` has not acknowledged (pending or not delivered yet): nil
-- when the group does not exist, false when it has acknowledged every entry. Also returns how
-- many entries it holds pending.
local function outbox_horizon(group, delivered)
  if delivered == nil then delivered = outbox_groups()[group] end
  if not delivered then return nil, 0 end
  local pending = redis.call('XPENDING', K_OUTBOX, group)
  if pending[1] > 0 then return pending[2], pending[1] end
  local after = redis.call('XRANGE', K_OUTBOX, '(' .. delivered, '+', 'COUNT', 1)[1]
  if after then return after[1], 0 end
  return false, 0
end
