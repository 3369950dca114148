-- push_op: appends an operator's entry (a complete, an expire, a reply) to the conversation's
-- inbox, without dedupe, behind the messages already waiting. With Dramatiq's queue keys and a
-- wake-up message (a process without a broker: the session API), it enqueues the wake-up
-- itself, as the ingest script does.
--
-- KEYS:
--   inbox                 the conversation's inbox
--   wake                  the conversation's wake flag
--   pending               the index of conversations with work waiting
--   wake_ttl              the re-drive pass' wake flag TTL, when set
--   queue?                Dramatiq's queue (only with the wake-up message)
--   queue_messages?       Dramatiq's queue messages hash
-- ARGV:
--   entry           str   the inbox entry
--   conv            str   the conversation
--   accepted_ms     str   when it was requested (ms)
--   wake_ttl_ms     str   the wake flag's TTL when `wake:ttl` is not set
--   wake_id?        str   the wake-up's Dramatiq message id
--   wake_message?   str   the wake-up's Dramatiq message
-- Returns 1 accepted, 2 accepted and a wake-up needed, 3 accepted and a wake-up enqueued.

redis.call('RPUSH', KEY.inbox, ARG.entry)
redis.call('ZADD', KEY.pending, 'NX', ARG.accepted_ms, ARG.conv)
local wake_ttl = redis.call('GET', KEY.wake_ttl) or ARG.wake_ttl_ms
if not redis.call('SET', KEY.wake, '1', 'NX', 'PX', wake_ttl) then return 1 end
if ARG.wake_id then
  redis.call('HSET', KEY.queue_messages, ARG.wake_id, ARG.wake_message)
  redis.call('RPUSH', KEY.queue, ARG.wake_id)
  return 3
end
return 2
