-- outbox_backlog: what the backlog metrics show, read in one step: the stream's length and,
-- per consumer group, its pending count and the first entry it has not acknowledged.
--
-- Uses: outbox
-- KEYS: none (the outbox stream)
-- ARGV:
--   groups          json  the groups to report even when missing (as never read: everything)
-- Returns {length, {group, pending, first unacknowledged id or ''}...}.

local length = redis.call('XLEN', K_OUTBOX)
local known = outbox_groups()
local out = {length}
local seen = {}
local function report(name, delivered)
  seen[name] = true
  local first, pending = false, 0
  if delivered then
    first, pending = outbox_horizon(name, delivered)
  else
    local head = redis.call('XRANGE', K_OUTBOX, '-', '+', 'COUNT', 1)[1]
    first = head and head[1] or false
  end
  out[#out + 1] = {name, pending, first or ''}
end
for name, delivered in pairs(known) do report(name, delivered) end
for _, name in ipairs(ARG.groups) do
  if not seen[name] then report(name, nil) end
end
return out
