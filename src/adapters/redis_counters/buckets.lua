-- The bucket arithmetic of the core (crates/core/src/bucket.rs) in milliseconds, on Redis's own
-- clock (so replicas' clocks cannot skew a bucket). States are strings "<algorithm> <numbers>":
-- "t credit last" (credit in token x window_ms units), "f window_start count",
-- "s newest_slot c0 .. c10". Ops: c consume, k check, r refund, a add (count hits admitted
-- elsewhere, unconditionally: the cached mode's flush). Prepended to decide.lua and sync.lua.

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
  elseif op == 'a' then
    credit = math.max(0, credit - needed)
    ok = true
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
  elseif op == 'a' then
    count = count + hits
    ok = true
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
  elseif op == 'a' then
    counts[slot % RING] = counts[slot % RING] + hits
    ok = true
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

local function apply(algo, s, limit, cap, win, hits, op)
  if algo == 't' then
    return token(s, limit, cap, win, hits, op)
  elseif algo == 'f' then
    return fixed(s, limit, win, hits, op)
  end
  return sliding(s, limit, win, hits, op)
end

