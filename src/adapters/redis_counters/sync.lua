-- The cached mode's flush (buckets.lua is prepended): adds the hits a replica admitted from its
-- local buckets since its last flush, and returns each bucket's global state to replace its
-- local one.
-- KEYS[i]: a bucket. ARGV, 7 per bucket: algorithm (t|f|s|g), limit, capacity, window_ms, hits,
--   ttl_ms, calendar_start_ms (as decide.lua's).
-- Returns one state string per bucket, then Redis's clock in milliseconds, then the number of
-- keys reset because their value was not a bucket state (as strings).

local out = {}
for i = 1, #KEYS do
  local b = (i - 1) * 7
  local limit, cap, win = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local s = parse_checked(KEYS[i], ARGV[b + 1], limit, cap, win)
  local _, _, _, _, state =
    apply(ARGV[b + 1], s, limit, cap, win, tonumber(ARGV[b + 5]), 'a', tonumber(ARGV[b + 7]))
  redis.call('SET', KEYS[i], state, 'PX', ARGV[b + 6])
  out[#out + 1] = state
end
out[#out + 1] = fmt(now)
out[#out + 1] = fmt(repaired)
return out
