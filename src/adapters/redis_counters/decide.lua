-- One decision's bucket operations, atomically (buckets.lua is prepended).
-- KEYS[i]: the bucket of operation i.
-- ARGV, 9 per operation: algorithm (t|f|s|g), limit, capacity, window_ms, hits,
--   op (c: consume, k: check, r: refund, a: add), enforced (1|0), ttl_ms, calendar_start_ms
--   (a calendar window's start, its length window_ms; 0: windows aligned to the epoch).
-- Returns 4 integers per operation: allowed (1|0), remaining, reset_after_ms, retry_after_ms;
-- then the number of keys whose value was not a bucket state and was reset (buckets.lua).
-- If an enforced consume is denied, no operation's change is kept (a denied request consumes
-- nothing), though each outcome is reported as computed.

local out, saved, denied = {}, {}, false
for i = 1, #KEYS do
  local b = (i - 1) * 9
  local algo, op = ARGV[b + 1], ARGV[b + 6]
  local limit, cap, win = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local hits = tonumber(ARGV[b + 5])
  local s = parse_checked(KEYS[i], algo, limit, cap, win)
  if #s > 0 then saved[i] = table.concat(s, ' ') end
  local ok, remaining, reset, retry, state =
    apply(algo, s, limit, cap, win, hits, op, tonumber(ARGV[b + 9]))
  if (not ok) and op == 'c' and ARGV[b + 7] == '1' then denied = true end
  -- Later operations on the same key see this one's change.
  redis.call('SET', KEYS[i], state, 'PX', ARGV[b + 8])
  out[#out + 1] = ok and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end
if denied then
  -- Put every key back as it was before this call (in reverse: a key written twice ends at
  -- the state before its first write; a damaged value stays repaired, as a fresh bucket).
  for i = #KEYS, 1, -1 do
    if saved[i] then
      redis.call('SET', KEYS[i], saved[i], 'PX', ARGV[(i - 1) * 9 + 8])
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
out[#out + 1] = repaired
return out
