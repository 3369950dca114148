-- Library: appending an operation entry (an operator's complete, expire or reply, a business
-- message) to a conversation's inbox, behind the messages already waiting, and waking its
-- drain. Shared by push_op and start_flow; needs nothing from the prelude.

-- Returns 1 accepted, 2 accepted and a wake-up needed, 3 accepted and a wake-up enqueued
-- (with Dramatiq's queue keys and a wake-up message: a process without a broker).
local function push_entry(k, entry, conv, accepted_ms, wake_ttl_ms, wake_id, wake_message)
  redis.call('RPUSH', k.inbox, entry)
  redis.call('ZADD', k.pending, 'NX', accepted_ms, conv)
  local wake_ttl = redis.call('GET', k.wake_ttl) or wake_ttl_ms
  if not redis.call('SET', k.wake, '1', 'NX', 'PX', wake_ttl) then return 1 end
  if wake_id then
    redis.call('HSET', k.queue_messages, wake_id, wake_message)
    redis.call('RPUSH', k.queue, wake_id)
    return 3
  end
  return 2
end
