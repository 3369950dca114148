-- ingest: the webhook's one round trip. Dedupes on the MessageSid, holds the conversation to its
-- rate, appends the entry to the conversation's inbox, and enqueues a drain wake-up unless one
-- is already queued or running.
--
-- Dedupe markers are fields of small hashes, one per time bucket (a day) and MessageSid shard
-- (its last 3 characters): <seen_prefix><bucket>:<shard> -> {rest of the sid: ''}. A marker is
-- looked up in every bucket the dedupe period covers; each bucket expires a dedupe period after
-- it closes. Small hashes are listpacks: ~35 bytes a marker instead of ~130 for a key.
-- The rate (rate_per_minute > 0) is checked after the dedupe, so a retry of an accepted message
-- stays a duplicate: GCRA, a token bucket of rate_per_minute tokens refilled one every
-- 60000/rate_per_minute ms, kept as one number, the conversation's "theoretical arrival time"
-- (`rate`, ms, expiring when it is reached). A refused message is neither stored nor marked
-- seen and takes no token; `drainrules.rate_admits` is the same rule for the in-memory store.
-- With the Dramatiq queue's keys and message, the wake-up is enqueued here, as Dramatiq's own
-- dispatch script does (HSET <queue>.msgs <id> <message>, RPUSH <queue> <id>), saving the
-- webhook a second round trip; without them the caller enqueues it. The wake flag lives
-- `wake:ttl` ms when the re-drive pass has set it (Dramatiq's queue is backed up), else
-- wake_ttl_ms (a lease period).
-- Touches only its KEYS and the dedupe buckets: no prelude, this is the hottest script.
--
-- KEYS:
--   inbox                 the conversation's inbox
--   wake                  the conversation's wake flag
--   pending               the index of conversations with work waiting
--   wake_ttl              the re-drive pass' wake flag TTL, when set
--   rate                  the conversation's rate (its theoretical arrival time, ms)
--   queue?                Dramatiq's queue (only with the wake-up message)
--   queue_messages?       Dramatiq's queue messages hash
-- ARGV:
--   entry           str   the inbox entry
--   message_sid     str   Twilio's MessageSid (dedupe)
--   conv            str   the conversation
--   accepted_ms     int   when the webhook accepted it (ms)
--   max_depth       int   inbox length at which it is refused
--   wake_ttl_ms     str   the wake flag's TTL when `wake:ttl` is not set
--   seen_prefix     str   the dedupe buckets' key prefix
--   bucket_ms       int   one dedupe bucket's span
--   dedupe_ttl_ms   int   the dedupe period
--   rate_per_minute int   messages a minute the conversation may send; 0: no limit
--   wake_id?        str   the wake-up's Dramatiq message id
--   wake_message?   str   the wake-up's Dramatiq message
-- Returns 0 duplicate, -1 inbox full, -2 over its rate, 1 accepted, 2 accepted and a wake-up
-- needed, 3 accepted and a wake-up enqueued.

local sid = ARG.message_sid
local bucket_ms, ttl_ms = ARG.bucket_ms, ARG.dedupe_ttl_ms
local shard = ':' .. string.sub(sid, -3)
local field = string.sub(sid, 1, -4)
local accepted = ARG.accepted_ms
local bucket = math.floor(accepted / bucket_ms)
for b = bucket - math.ceil(ttl_ms / bucket_ms), bucket do
  if redis.call('HEXISTS', ARG.seen_prefix .. b .. shard, field) == 1 then return 0 end
end
local rate_tat
if ARG.rate_per_minute > 0 then
  local interval = math.floor(60000 / ARG.rate_per_minute)
  local tat = math.max(tonumber(redis.call('GET', KEY.rate) or 0), accepted)
  if tat - accepted > 60000 - interval then return -2 end
  rate_tat = tat + interval
end
if redis.call('LLEN', KEY.inbox) >= ARG.max_depth then return -1 end
local seen = ARG.seen_prefix .. bucket .. shard
if redis.call('HSET', seen, field, '') == 1 and redis.call('HLEN', seen) == 1 then
  -- Relative to the acceptance clock, not Redis' (the two may differ: tests, clock skew).
  redis.call('PEXPIRE', seen, string.format('%d', (bucket + 1) * bucket_ms + ttl_ms - accepted))
end
if rate_tat then
  local rate_ttl = string.format('%d', rate_tat - accepted)
  redis.call('SET', KEY.rate, string.format('%d', rate_tat), 'PX', rate_ttl)
end
redis.call('RPUSH', KEY.inbox, ARG.entry)
redis.call('ZADD', KEY.pending, 'NX', accepted, ARG.conv)
local wake_ttl = redis.call('GET', KEY.wake_ttl) or ARG.wake_ttl_ms
if not redis.call('SET', KEY.wake, '1', 'NX', 'PX', wake_ttl) then return 1 end
if ARG.wake_id then
  redis.call('HSET', KEY.queue_messages, ARG.wake_id, ARG.wake_message)
  redis.call('RPUSH', KEY.queue, ARG.wake_id)
  return 3
end
return 2
