-- apply_message: appends a message to the conversation's live session, opening one when it
-- has none or its session ended or timed out (the service's add_message, outside any inbox).
--
-- Uses: rollups, outbox, sessions
-- KEYS: none (the keys are derived from the conversation)
-- ARGV:
--   conv            str   the conversation, <customer>|<business>
--   ts              int   the message's time (ms)
--   now             int   the caller's clock (ms)
--   new_sid         str   the id of the session to open if one is needed
--   timeout_ms      int   inactivity before a session expires
--   cap             int   messages kept per session
--   keep_ms         int   how long an ended session's keys live
--   direction       str   inbound or outbound
--   message_type    str   text, image, ...
--   message         str   the message JSON, as stored
--   carry           json  context keys copied from the conversation's last session
-- Returns {sid, created (0/1), expired sid or ''}, or an error reply.

return apply_message(ARG.conv, ARG.ts, ARG.now, ARG.new_sid, ARG.timeout_ms, ARG.cap,
  ARG.keep_ms, ARG.direction, ARG.message_type, ARG.message, ARG.carry)
