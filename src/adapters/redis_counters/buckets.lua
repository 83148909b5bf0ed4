-- The bucket arithmetic of the core (crates/core/src/bucket.rs) in milliseconds, on Redis's own
-- clock (so replicas' clocks cannot skew a bucket). States are strings "<algorithm> <numbers>":
-- "t credit last" (credit in token x window_ms units), "f window_start count",
-- "s newest_slot c0 .. c10", "g tat_us" (GCRA's theoretical arrival time in microseconds: a
-- spacing of a millisecond would cap GCRA at 1,000 a second; a microsecond caps it at a million,
-- under-admitting beyond, never over). Ops: c consume, k check, r refund, a add (count hits admitted
-- elsewhere, unconditionally: the cached mode's flush and the exact mode's reconciliation; a
-- token bucket's credit may go below zero, a debt repaid by refill before anything is admitted).
-- A value that is not a state this script wrote (another type, garbage, a window or slot in the
-- future, negative counts) is that key's problem only: it is reset to a fresh bucket and counted
-- in `repaired`, never an error (an error would count against the whole fleet's breaker).
-- Prepended to decide.lua and sync.lua.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local SLOTS = 10
local RING = SLOTS + 1

local function fmt(x) return string.format('%.0f', x) end

-- Keys reset because their value was not a bucket state.
local repaired = 0

-- A finite number at most `hi` and at least `lo`, else nil.
local function num(x, lo, hi)
  local v = tonumber(x)
  if v == nil or v ~= v or v < lo or v > hi then return nil end
  return v
end

-- The state at `key` as its fields (empty: fresh). `valid` checks them for algorithm `algo`.
local function read(key)
  local ok, raw = pcall(redis.call, 'GET', key)
  if not ok then
    repaired = repaired + 1
    return {}
  end
  local out = {}
  if raw then
    for x in string.gmatch(raw, '%S+') do out[#out + 1] = x end
  end
  return out
end

local BIG = 9007199254740992 -- 2^53: beyond it a double no longer counts exactly.

-- GCRA's spacing in microseconds (the period / limit, rounded up: never over-admits).
local function spacing_us(limit, win)
  return math.ceil(win * 1000 / math.max(limit, 1))
end

-- Whether `s` is a state of `algo` this script could have written (for a limit of `limit` per
-- window of `win` ms); a state of another algorithm is a rule change, not damage.
local function valid(s, algo, limit, cap, win)
  if #s == 0 then return true end
  if s[1] ~= 't' and s[1] ~= 'f' and s[1] ~= 's' and s[1] ~= 'g' then return false end
  if s[1] ~= algo then return true end
  if algo == 'g' then
    -- At most a burst ahead, and a burst's debt more (op 'a').
    return #s == 2 and num(s[2], 0, now_us + 2 * cap * spacing_us(limit, win)) ~= nil
  end
  if algo == 't' then
    return #s == 3 and num(s[2], -cap * win, BIG) ~= nil and num(s[3], 0, now + win) ~= nil
  elseif algo == 'f' then
    return #s == 3 and num(s[2], 0, now + win) ~= nil and num(s[3], 0, BIG) ~= nil
  end
  if #s ~= 2 + SLOTS + 1 or num(s[2], 0, math.floor(now / (win / SLOTS)) + 1) == nil then
    return false
  end
  for i = 3, #s do
    if num(s[i], 0, BIG) == nil then return false end
  end
  return true
end

-- The fields at `key`, reset (and counted) when they are not a state of `algo`.
local function parse_checked(key, algo, limit, cap, win)
  local s = read(key)
  if not valid(s, algo, limit, cap, win) then
    repaired = repaired + 1
    return {}
  end
  return s
end

local function token(s, limit, cap, win, hits, op)
  local full = cap * win
  local credit, last = full, now
  if s[1] == 't' then credit = math.min(full, tonumber(s[2])); last = tonumber(s[3]) end
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
    -- Hits admitted elsewhere are owed even beyond the credit: forgetting them would let
    -- every replica refill at the full rate. The debt is at most a full bucket (repaid in
    -- one window at the refill rate), so an outage's local admissions cannot lock a key out.
    credit = math.max(-full, credit - needed)
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
  return ok, math.max(0, math.floor(credit / win)), wait(full), retry,
    't ' .. fmt(credit) .. ' ' .. fmt(last)
end

local function fixed(s, limit, win, hits, op, cal_start)
  -- A calendar window starts where the caller's zone says (its length is `win`).
  local current = now - (now % win)
  if cal_start and cal_start > 0 then current = cal_start end
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

-- As the core's `BucketState::gcra`, in microseconds; times returned in milliseconds, rounded
-- up (a retry is never advised early).
local function gcra(s, limit, cap, win, hits, op)
  local one = spacing_us(limit, win)
  local tolerance = cap * one
  local tat = now_us
  if s[1] == 'g' then tat = math.max(now_us, tonumber(s[2])) end
  local function fits(next) return next - now_us <= tolerance end
  local ok
  if op == 'c' then
    ok = fits(tat + hits * one)
    if ok then tat = tat + hits * one end
  elseif op == 'k' then
    ok = fits(tat + one)
  elseif op == 'a' then
    -- Owed beyond the burst, at most a burst's worth more (as the token bucket's debt).
    tat = math.min(tat + hits * one, now_us + 2 * tolerance)
    ok = true
  else
    tat = math.max(now_us, tat - hits * one)
    ok = true
  end
  local backlog = tat - now_us
  local retry = 0
  if not ok then
    local need = hits * one
    if op == 'k' then need = one end
    if need > tolerance then retry = backlog else retry = math.max(0, tat + need - tolerance - now_us) end
  end
  local remaining = math.floor(math.max(0, tolerance - backlog) / one)
  return ok, remaining, math.ceil(backlog / 1000), math.ceil(retry / 1000), 'g ' .. fmt(tat)
end

local function apply(algo, s, limit, cap, win, hits, op, cal_start)
  if algo == 't' then
    return token(s, limit, cap, win, hits, op)
  elseif algo == 'g' then
    return gcra(s, limit, cap, win, hits, op)
  elseif algo == 'f' then
    return fixed(s, limit, win, hits, op, cal_start)
  end
  return sliding(s, limit, win, hits, op)
end

