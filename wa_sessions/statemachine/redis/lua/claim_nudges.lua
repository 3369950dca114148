-- claim_nudges: takes the sessions whose nudge is due out of the nudge index and decides, per
-- session and atomically with marking it (`nudged`, never cleared), whether it gets one: it
-- must be active, not expired, not nudged before, its conversation not opted out (STOP), and
-- its order unconfirmed (a flow not at `done`, or no flow and an order with items). A session
-- that does not qualify leaves the index too: its next activity puts it back. Two schedulers,
-- or one restarted, never claim a session twice: the field and the index change in this one
-- script.
--
-- Uses: rollups, sessions
-- KEYS: none (the global nudge index and keys derived from it)
-- ARGV:
--   cutoff          int   last activity at or before which the nudge is due (ms)
--   now             int   the scheduler's clock (ms)
--   timeout_ms      int   inactivity before a session expires
--   limit           int   candidates per batch
-- Returns {per claimed session: sid, conv, order JSON, last inbound ms or '', language JSON
-- or '', the conversation's language override or ''}, then the number of candidates examined.

local ids = redis.call('ZRANGEBYSCORE', K_NUDGE, '-inf', ARG.cutoff, 'LIMIT', 0, ARG.limit)
local out = {}
for _, sid in ipairs(ids) do
  redis.call('ZREM', K_NUDGE, sid)
  local conv = conv_of(sid)
  local h = conv and redis.call('HMGET', k_sess(conv, sid), S.status, S.last_activity, S.nudged,
    S.order, S.last_inbound, S.flow, S.flow_step, S.context .. CTX.language) or {}
  local due = h[1] == 'active' and not h[3] and tonumber(h[2]) + ARG.timeout_ms > ARG.now
    and redis.call('EXISTS', k_optout(conv)) == 0
  local unconfirmed = false
  if due then
    if h[6] then
      unconfirmed = h[7] ~= 'done'
    elseif h[4] then
      local ok, order = pcall(cjson.decode, h[4])
      unconfirmed = ok and type(order) == 'table' and type(order.items) == 'table'
        and #order.items > 0
    end
  end
  if due and unconfirmed then
    redis.call('HSET', k_sess(conv, sid), S.nudged, ARG.now)
    out[#out + 1] = {sid, conv, h[4], h[5] or '', h[8] or '', redis.call('GET', k_lang(conv)) or ''}
  end
end
return {out, #ids}
