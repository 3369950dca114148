-- migrate_sessions: moves sessions stored before the conversation hash tag (P s:<sid> and
-- P s:<sid>:m) under their conversation's tag, and records them in idx:conv. Idempotent: a
-- session already moved, or gone, is skipped. RENAME keeps each key's TTL.
--
-- Uses: names
-- KEYS: none (one Redis: the old and new keys are in different hash slots)
-- ARGV:
--   sessions        json  [[sid, old hash key, old history key], ...]
-- Returns how many sessions it moved.

local moved = 0
for _, item in ipairs(ARG.sessions) do
  local sid, old_hash, old_list = item[1], item[2], item[3]
  local conv = redis.call('HGET', old_hash, S.conv)
  if conv then
    redis.call('RENAME', old_hash, k_sess(conv, sid))
    if redis.call('EXISTS', old_list) == 1 then
      redis.call('RENAME', old_list, k_msgs(conv, sid))
    end
    redis.call('HSET', K_SESSION_CONV, sid, conv)
    moved = moved + 1
  end
end
return moved
