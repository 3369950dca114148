-- push_op: appends an operator's complete or expire to the conversation's inbox, without
-- dedupe, behind the messages already waiting.
--
-- KEYS:
--   inbox                 the conversation's inbox
--   wake                  the conversation's wake flag
--   pending               the index of conversations with work waiting
--   wake_ttl              the re-drive pass' wake flag TTL, when set
-- ARGV:
--   entry           str   the inbox entry
--   conv            str   the conversation
--   accepted_ms     str   when it was requested (ms)
--   wake_ttl_ms     str   the wake flag's TTL when `wake:ttl` is not set
-- Returns 1 accepted, 2 accepted and a wake-up needed.

redis.call('RPUSH', KEY.inbox, ARG.entry)
redis.call('ZADD', KEY.pending, 'NX', ARG.accepted_ms, ARG.conv)
local wake_ttl = redis.call('GET', KEY.wake_ttl) or ARG.wake_ttl_ms
if redis.call('SET', KEY.wake, '1', 'NX', 'PX', wake_ttl) then return 2 end
return 1
