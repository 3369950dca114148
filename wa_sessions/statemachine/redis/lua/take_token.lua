-- take_token: one request token from an API's deployment-wide bucket (requests per minute),
-- unless the API asked (429 Retry-After) that no request start for a while.
--
-- KEYS:
--   bucket                the API's token bucket (hash: tokens, at)
--   pause                 set while the API's pause lasts
-- ARGV:
--   now_ms          int   the caller's clock (epoch ms)
--   rate            str   tokens per ms (requests per minute / 60,000)
--   capacity        str   the burst: tokens the bucket holds at most
-- Returns 0 when a token was taken, else the ms to wait before asking again.

local paused = redis.call('PTTL', KEY.pause)
if paused > 0 then return paused end
local now, rate, capacity = ARG.now_ms, tonumber(ARG.rate), tonumber(ARG.capacity)
local state = redis.call('HMGET', KEY.bucket, B.tokens, B.at)
local tokens, at = tonumber(state[1]) or capacity, tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate) end
redis.call('HSET', KEY.bucket, B.tokens, tostring(tokens), B.at, now)
redis.call('PEXPIRE', KEY.bucket, math.ceil(capacity / rate) + 1000)
return wait
