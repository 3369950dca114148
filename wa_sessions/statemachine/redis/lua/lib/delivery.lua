-- Library: delivery statuses of outbound replies. Needs the prelude (key names, the delivery
-- ranks R) and the rollups library; hash fields are written S.<field> and O.<field>, the loader puts in the names.

-- Writes a delivery status into an outbound message's metadata, found by its absolute position
-- (checked by id). Returns false when the message has been trimmed from the history or purged.
local function set_delivery(conv, sid, pos, mid, status, code, at)
  local idx = tonumber(pos) - tonumber(redis.call('HGET', k_sess(conv, sid), S.trimmed) or '0')
  if idx < 0 then return false end
  local mkey = k_msgs(conv, sid)
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
-- come first: the furthest status recorded so far wins over the one Twilio's create returned,
-- and is counted in the analytics now that the reply's business number is known.
local function map_outbound(msid, conv, sid, mid, pos, status, keep_ms, at, now_ms)
  local okey = k_out(msid)
  local h = redis.call('HMGET', okey, O.rank, O.status, O.error_code)
  redis.call('HSET', okey, O.session_id, sid, O.message_id, mid, O.position, pos)
  redis.call('PEXPIRE', okey, keep_ms)
  local rank = R[status] or 0
  if h[1] and tonumber(h[1]) >= rank then
    set_delivery(conv, sid, pos, mid, h[2], h[3] or '', at)
    rollup_delivery(biz_of(conv), -1, h[2], now_ms)
  else
    redis.call('HSET', okey, O.status, status, O.rank, rank)
    rollup_delivery(biz_of(conv), -1, status, now_ms)
  end
end
