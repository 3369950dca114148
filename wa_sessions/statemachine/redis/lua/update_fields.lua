-- update_fields: sets and deletes fields of an existing session hash (context keys, order).
--
-- Uses: rollups, outbox, sessions
-- KEYS: none (the keys are derived from the session id, through idx:conv)
-- ARGV:
--   sid             str   the session
--   set             json  {field: value} to write
--   delete          json  [field] to remove
-- Returns 1, or 0 when the session does not exist.

local conv = conv_of(ARG.sid)
if not conv then return 0 end
local skey = k_sess(conv, ARG.sid)
if redis.call('EXISTS', skey) == 0 then return 0 end
for field, value in pairs(ARG.set) do redis.call('HSET', skey, field, value) end
for _, field in ipairs(ARG.delete) do redis.call('HDEL', skey, field) end
return 1
