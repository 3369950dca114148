-- outbox_trim: drops the outbox entries every consumer group has acknowledged (XTRIM MINID
-- below the oldest entry still pending or not yet delivered in any group). Without a group
-- nothing is trimmed: nobody has read the stream yet.
--
-- Uses: outbox
-- KEYS: none (the outbox stream)
-- ARGV:
--   limit           int   at most this many entries go per call
-- Returns how many entries it removed.

local bound, any = nil, false
for name, delivered in pairs(outbox_groups()) do
  any = true
  local first = outbox_horizon(name, delivered)
  if first == false then
    -- Everything up to the last delivered id is done: keep what follows it.
    local ms, seq = outbox_id_parts(delivered)
    first = ms .. '-' .. (seq + 1)
  end
  if bound == nil or outbox_id_before(first, bound) then bound = first end
end
if not any or not bound then return 0 end
return redis.call('XTRIM', K_OUTBOX, 'MINID', '~', bound, 'LIMIT', ARG.limit)
