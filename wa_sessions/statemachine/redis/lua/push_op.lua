-- push_op: appends an operator's entry (a complete, an expire, a reply) to the conversation's
-- inbox, without dedupe, behind the messages already waiting. With Dramatiq's queue keys and a
-- wake-up message (a process without a broker: the session API), it enqueues the wake-up
-- itself, as the ingest script does.
--
-- Uses: inbox
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

return push_entry({inbox = KEY.inbox, wake = KEY.wake, pending = KEY.pending,
  wake_ttl = KEY.wake_ttl, queue = KEY.queue, queue_messages = KEY.queue_messages}, ARG.entry,
  ARG.conv, ARG.accepted_ms, ARG.wake_ttl_ms, ARG.wake_id, ARG.wake_message)
