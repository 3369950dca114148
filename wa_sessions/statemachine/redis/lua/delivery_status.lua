-- delivery_status: one Twilio status callback. Deduplicated on MessageSid plus status, and
-- applied only when it moves the reply's status forward. A callback that beats the commit of
-- its reply is kept (for a day) and applied by map_outbound when the reply is committed.
-- Delivered, read, failed and undelivered count once per reply in the analytics rollups. An
-- applied status publishes the conversation on the console's channel (live delivery ticks);
-- an applied failed or undelivered one writes message.failed to the outbox.
--
-- Uses: rollups, outbox, sessions, delivery
-- KEYS: none (the reply's key is derived from its MessageSid, its session's from idx:conv)
-- ARGV:
--   message_sid     str   the reply's Twilio MessageSid
--   status          str   Twilio's MessageStatus
--   error_code      str   Twilio's ErrorCode, '' for none
--   at              str   when it arrived (ISO time), written into the message's metadata
--   at_ms           int   the same time (epoch ms): the analytics hour it counts in
--   unmapped_ttl_ms str   how long a callback for a reply not committed yet is kept
-- Returns {outcome}: duplicate, stale, unknown (not mapped yet) or applied.

local okey = k_out(ARG.message_sid)
local status = ARG.status
if redis.call('HSETNX', okey, O.seen .. status, '1') == 0 then return {'duplicate'} end
local h = redis.call('HMGET', okey, O.rank, O.session_id, O.position, O.message_id)
if not h[2] and redis.call('PTTL', okey) < 0 then
  redis.call('PEXPIRE', okey, ARG.unmapped_ttl_ms)
end
local rank = R[status] or 0
if h[1] and tonumber(h[1]) >= rank then return {'stale'} end
redis.call('HSET', okey, O.status, status, O.rank, rank)
if ARG.error_code ~= '' then redis.call('HSET', okey, O.error_code, ARG.error_code) end
if not h[2] then return {'unknown'} end
local conv = conv_of(h[2])
if conv then
  set_delivery(conv, h[2], h[3], h[4], status, ARG.error_code, ARG.at)
  rollup_delivery(biz_of(conv), tonumber(h[1] or '-1'), status, ARG.at_ms)
  if status == 'failed' or status == 'undelivered' then
    outbox_add('message.failed', conv, h[2], ARG.at_ms, '{"message_id":' .. cjson.encode(h[4])
      .. ',"reason":' .. cjson.encode(status) .. ',"error_code":' .. ob_str(ARG.error_code)
      .. ',"twilio_sid":' .. cjson.encode(ARG.message_sid) .. '}')
  end
  redis.call('PUBLISH', K_CONSOLE_CHANNEL, conv)
end
return {'applied'}
