-- start_flow: a conversation template started from the business's side (POST /conversations,
-- the operators' script). Sets the session's flow and first step and appends the first message
-- to the conversation's inbox in one script: the customer's answer is queued behind that
-- message, so the drain reads it at that step, and no flow is set without its message queued.
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
--   entry           str   the inbox entry carrying the first message
--   conv            str   the conversation
--   sid             str   the session that follows the flow
--   flow            str   the template's name
--   flow_step       str   its first step
--   done            str   the step id of a finished flow
--   accepted_ms     str   when it was requested (ms)
--   wake_ttl_ms     str   the wake flag's TTL when `wake:ttl` is not set
--   wake_id?        str   the wake-up's Dramatiq message id
--   wake_message?   str   the wake-up's Dramatiq message
-- Returns {'ok', ''}, {'ended', status} (the session is no longer active, or gone: '') or
-- {'flow', template} (the session already follows a flow that is not finished).

local skey = k_sess(ARG.conv, ARG.sid)
local h = redis.call('HMGET', skey, S.status, S.flow, S.flow_step)
if h[1] ~= 'active' then return {'ended', h[1] or ''} end
if h[2] and h[3] ~= ARG.done then return {'flow', h[2]} end
redis.call('HSET', skey, S.flow, ARG.flow, S.flow_step, ARG.flow_step)
push_entry({inbox = KEY.inbox, wake = KEY.wake, pending = KEY.pending, wake_ttl = KEY.wake_ttl,
  queue = KEY.queue, queue_messages = KEY.queue_messages}, ARG.entry, ARG.conv, ARG.accepted_ms,
  ARG.wake_ttl_ms, ARG.wake_id, ARG.wake_message)
return {'ok', ''}
