-- Leases on one key (a sorted set: member = lease id, score = its deadline in ms on Redis's
-- clock), as the core's `lease::LeaseTable`. Expired leases are dropped first, so a holder that
-- crashed frees its slot at its deadline.
-- KEYS[1]: the key's set. ARGV: mode (a: acquire, n: renew, r: release), lease id, limit,
--   ttl_ms (limit and ttl unused by r).
-- Returns {done (1|0), ms (a/n granted: the ttl; a refused: until the earliest deadline), holders}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, mode, id = KEYS[1], ARGV[1], ARGV[2]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)

-- The set lives as long as its longest lease.
local function keep()
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last == 2 then redis.call('PEXPIREAT', key, tonumber(last[2]) + 1) end
end

if mode == 'r' then
  local removed = redis.call('ZREM', key, id)
  if removed == 1 then keep() end
  return {removed, 0, redis.call('ZCARD', key)}
end
local limit, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local held = redis.call('ZSCORE', key, id)
local holders = redis.call('ZCARD', key)
if mode == 'n' then
  if not held then return {0, 0, holders} end
  redis.call('ZADD', key, now + ttl, id)
  keep()
  return {1, ttl, holders}
end
if held or holders < limit then
  redis.call('ZADD', key, now + ttl, id)
  keep()
  if not held then holders = holders + 1 end
  return {1, ttl, holders}
end
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, math.max(0, tonumber(first[2]) - now), holders}
