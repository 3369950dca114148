-- erase_conv: deletes one conversation everywhere in Redis (a customer's erasure request):
-- every session of it with its messages, its entries in every index (the nudge's included), its
-- inbox, pending effects, lease, wake flag, rate and language override. Outbox entries are
-- removed by the caller (XDEL). The STOP opt-out is kept: without it the service would message
-- a customer who asked it not to (it holds no message, only the conversation's key).
--
-- Uses: names
-- KEYS: none (the conversation's keys and the global indexes)
-- ARGV:
--   conv            str   the conversation (<customer>|<business>)
-- Returns how many sessions it deleted.

local sids = redis.call('ZRANGE', k_sessions(ARG.conv), 0, -1)
for _, sid in ipairs(sids) do
  redis.call('DEL', k_sess(ARG.conv, sid), k_msgs(ARG.conv, sid))
  redis.call('HDEL', K_SESSION_CONV, sid)
  for _, index in ipairs({K_ALL, K_ACTIVE, K_ENDED, K_TAKEOVER, K_NUDGE, k_status('completed'),
      k_status('expired')}) do
    redis.call('ZREM', index, sid)
  end
end
redis.call('DEL', k_sessions(ARG.conv), k_active(ARG.conv), k_inbox(ARG.conv),
  k_effects(ARG.conv), k_lease(ARG.conv), k_wake(ARG.conv), k_rate(ARG.conv),
  k_lang(ARG.conv))
redis.call('ZREM', K_PENDING, ARG.conv)
return #sids
