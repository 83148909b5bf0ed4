-- One decision's bucket operations, atomically, on Redis's own clock (so replicas' clocks
-- cannot skew a bucket). The arithmetic is the core's (crates/core/src/bucket.rs) in
-- milliseconds; states are strings "<algorithm> <numbers...>", each key expiring when its limit
-- would have fully recovered.
--
-- KEYS[i]: the bucket of operation i.
-- ARGV, 8 per operation: algorithm (t|f|s), limit, capacity, window_ms, hits,
--   op (c: consume, k: check, r: refund), enforced (1|0), ttl_ms.
-- Returns 4 integers per operation: allowed (1|0), remaining, reset_after_ms, retry_after_ms.
-- If an enforced consume is denied, no operation's change is kept (a denied request consumes
-- nothing), though each outcome is reported as computed.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local SLOTS = 10
local RING = SLOTS + 1

local function fmt(x) return string.format('%.0f', x) end

local function parse(raw)
  local out = {}
  if raw then
    for x in string.gmatch(raw, '%S+') do out[#out + 1] = x end
  end
  return out
end

local function token(s, limit, cap, win, hits, op)
  local full = cap * win
  local credit, last = full, now
  if s[1] == 't' then credit = tonumber(s[2]); last = tonumber(s[3]) end
  if now > last then
    credit = math.min(full, credit + (now - last) * limit)
    last = now
  end
  local needed = hits * win
  local ok
  if op == 'c' then
    ok = credit >= needed
    if ok then credit = credit - needed end
  elseif op == 'k' then
    ok = credit >= win
  else
    credit = math.min(full, credit + needed)
    ok = true
  end
  local function wait(target)
    if credit >= target then return 0 end
    if limit <= 0 then return win end
    return math.ceil((target - credit) / limit)
  end
  local retry = 0
  if not ok then
    if needed > full then retry = wait(full) else retry = wait(math.max(needed, win)) end
  end
  return ok, math.floor(credit / win), wait(full), retry, 't ' .. fmt(credit) .. ' ' .. fmt(last)
end

local function fixed(s, limit, win, hits, op)
  local current = now - (now % win)
  local count, start = 0, current
  if s[1] == 'f' then
    local seen = tonumber(s[2])
    if seen >= current then count = tonumber(s[3]) end
    if seen > current then start = seen end
  end
  local ok
  if op == 'c' then
    ok = count + hits <= limit
    if ok then count = count + hits end
  elseif op == 'k' then
    ok = count < limit
  else
    count = math.max(0, count - hits)
    ok = true
  end
  local reset = math.max(0, start + win - now)
  local retry = 0
  if not ok then retry = reset end
  return ok, math.max(0, limit - count), reset, retry, 'f ' .. fmt(start) .. ' ' .. fmt(count)
end

local function sliding(s, limit, win, hits, op)
  local width = win / SLOTS
  local slot = math.floor(now / width)
  local newest, counts = slot, {}
  for i = 0, SLOTS do counts[i] = 0 end
  if s[1] == 's' then
    newest = tonumber(s[2])
    for i = 0, SLOTS do counts[i] = tonumber(s[i + 3]) or 0 end
  end
  if slot > newest then
    local stale = math.min(slot - newest, RING)
    for i = 1, stale do counts[(newest + i) % RING] = 0 end
    newest = slot
  end
  slot = newest
  local used = 0
  for i = 0, SLOTS do used = used + counts[i] end
  local ok
  if op == 'c' then
    ok = used + hits <= limit
    if ok then counts[slot % RING] = counts[slot % RING] + hits end
  elseif op == 'k' then
    ok = used < limit
  else
    local left = hits
    for back = 0, SLOTS do
      if left == 0 or back > slot then break end
      local i = (slot - back) % RING
      local taken = math.min(counts[i], left)
      counts[i] = counts[i] - taken
      left = left - taken
    end
    ok = true
  end
  used = 0
  for i = 0, SLOTS do used = used + counts[i] end
  local function leaves_at(k) return (k + RING) * width end
  local oldest = math.max(0, slot - SLOTS)
  local reset = 0
  for k = slot, oldest, -1 do
    if counts[k % RING] > 0 then reset = math.max(0, leaves_at(k) - now); break end
  end
  local retry = 0
  if not ok then
    local need = hits
    if op == 'k' then need = 1 end
    local freed = 0
    retry = reset
    for k = oldest, slot do
      freed = freed + counts[k % RING]
      if used - freed + need <= limit then retry = math.max(0, leaves_at(k) - now); break end
    end
  end
  local parts = { 's', fmt(newest) }
  for i = 0, SLOTS do parts[#parts + 1] = fmt(counts[i]) end
  return ok, math.max(0, limit - used), reset, retry, table.concat(parts, ' ')
end

local out, saved, denied = {}, {}, false
for i = 1, #KEYS do
  local b = (i - 1) * 8
  local algo, op = ARGV[b + 1], ARGV[b + 6]
  local limit, cap, win = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local hits = tonumber(ARGV[b + 5])
  local raw = redis.call('GET', KEYS[i])
  saved[i] = raw
  local s = parse(raw)
  local ok, remaining, reset, retry, state
  if algo == 't' then
    ok, remaining, reset, retry, state = token(s, limit, cap, win, hits, op)
  elseif algo == 'f' then
    ok, remaining, reset, retry, state = fixed(s, limit, win, hits, op)
  else
    ok, remaining, reset, retry, state = sliding(s, limit, win, hits, op)
  end
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
  -- the state before its first write).
  for i = #KEYS, 1, -1 do
    if saved[i] then
      redis.call('SET', KEYS[i], saved[i], 'PX', ARGV[(i - 1) * 8 + 8])
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
return out
