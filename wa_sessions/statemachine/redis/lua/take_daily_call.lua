-- take_daily_call: one call from a customer's allowance of an API's calls for one UTC day,
-- unless the allowance is used up (then nothing is counted).
--
-- KEYS:
--   counter               the customer's calls that day (string, an integer)
-- ARGV:
--   cap             int   calls a customer may make a day
--   expire_at_ms    int   when the counter goes (epoch ms: the day's end, plus a margin)
-- Returns 1 when a call was taken, 0 when the customer is over the cap.

local used = tonumber(redis.call('GET', KEY.counter) or '0')
if used >= ARG.cap then return 0 end
redis.call('INCR', KEY.counter)
redis.call('PEXPIREAT', KEY.counter, ARG.expire_at_ms)
return 1
