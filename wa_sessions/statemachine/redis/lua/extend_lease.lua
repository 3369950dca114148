-- extend_lease: lengthens the drain's lease before a slow external call, if it is still ours.
--
-- KEYS:
--   lease                 the conversation's lease
-- ARGV:
--   token           str   the drain's lease token
--   lease_ms        str   the new TTL
-- Returns 1 when extended, 0 when the lease is no longer ours.

if redis.call('GET', KEY.lease) ~= ARG.token then return 0 end
redis.call('PEXPIRE', KEY.lease, ARG.lease_ms)
return 1
