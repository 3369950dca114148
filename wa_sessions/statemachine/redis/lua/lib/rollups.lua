-- Library: analytics rollups. One HINCRBY on a business number's hour hash per event (plus a
-- PEXPIRE and an SADD the first time a field of that hour is written). Needs the prelude (key
-- names, ROLLUP_KEEP_MS, the bucket bounds RB_*, the delivery ranks R); fields are written
-- A.<field>, the loader puts in the names. Times are the caller's epoch ms, never Redis' clock.

local HOUR_MS, DAY_MS = 3600000, 86400000

-- The business number of a conversation key (<customer>|<business>).
local function biz_of(conv)
  return string.match(conv, '^.-|(.*)$')
end

-- The index of the bucket `v` lands in: the first bound it does not exceed, else #bounds.
local function rollup_bucket(bounds, v)
  for i = 1, #bounds do
    if v <= bounds[i] then return i - 1 end
  end
  return #bounds
end

-- Adds `n` to `field` of `biz`'s hash for the hour of `ms`. A field's first write sets the
-- hash's TTL (the hour's end plus the retention, on the caller's clock) and lists the number.
local function rollup_add(biz, ms, field, n)
  if not biz or biz == '' then return end
  local hour = math.floor(ms / HOUR_MS)
  local key = k_rollup(biz, hour)
  if redis.call('HINCRBY', key, field, n) == n then
    redis.call('PEXPIRE', key, (hour + 1) * HOUR_MS - ms + ROLLUP_KEEP_MS)
    redis.call('SADD', K_ROLLUP_BUSINESSES, biz)
  end
end

-- Counts the items of an ended session's order (JSON text) in the day's top-items zset.
-- Returns true when the order has at least one item.
local function rollup_items(biz, ms, order)
  local ok, o = pcall(cjson.decode, order)
  if not ok or type(o) ~= 'table' or type(o.items) ~= 'table' then return false end
  local day = math.floor(ms / DAY_MS)
  local key = k_rollup_items(biz, day)
  local any = false
  for _, item in ipairs(o.items) do
    if type(item) == 'table' and type(item.name) == 'string' and type(item.quantity) == 'number'
        and item.quantity > 0 then
      any = true
      redis.call('ZINCRBY', key, tostring(item.quantity), string.lower(item.name))
    end
  end
  if any then
    redis.call('PEXPIRE', key, (day + 1) * DAY_MS - ms + ROLLUP_KEEP_MS)
    local over = redis.call('ZCARD', key) - ROLLUP_ITEMS_CAP
    if over > 0 then redis.call('ZREMRANGEBYRANK', key, 0, over - 1) end
  end
  return any
end

-- A session that ended at `ms` with status `dest`: its outcome, duration and message-count
-- buckets, and its order's items.
local function rollup_ended(biz, ms, dest, duration_ms, count, order)
  if not biz or biz == '' then return end
  rollup_add(biz, ms, A.ended .. dest, 1)
  rollup_add(biz, ms, A.duration .. rollup_bucket(RB_DURATION, duration_ms), 1)
  rollup_add(biz, ms, A.messages .. rollup_bucket(RB_MESSAGES, count), 1)
  if order and rollup_items(biz, ms, order) then rollup_add(biz, ms, A.ordered, 1) end
end

-- A reply's status moved forward from rank `old_rank` to `status` at `ms`: counts each outcome
-- once per reply (reaching read counts as delivered too, when delivered was skipped).
local function rollup_delivery(biz, old_rank, status, ms)
  if (status == 'delivered' or status == 'read') and old_rank < R['delivered'] then
    rollup_add(biz, ms, A.delivered, 1)
  end
  if status == 'read' and old_rank < R['read'] then rollup_add(biz, ms, A.read, 1) end
  if status == 'failed' then rollup_add(biz, ms, A.failed, 1) end
  if status == 'undelivered' then rollup_add(biz, ms, A.undelivered, 1) end
end
