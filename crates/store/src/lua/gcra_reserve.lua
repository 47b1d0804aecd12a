-- The GCRA reservation shared by every script that takes a rate-limit
-- permit (gcra.lua, admit.lua): one owner for the rule.
--
-- Reserving (instead of answering "not yet, ask again") makes every permit
-- one round trip, and Redis's own TIME gives every replica the same clock.

local function now_us()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- Reserves one permit of the limit whose theoretical arrival time (TAT, µs
-- since the epoch) is kept at `key`; returns the µs the caller waits
-- before using it.
local function gcra_reserve(key, interval, burst, now)
  local tolerance = interval * (burst - 1)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then
    tat = now
  end
  local wait = tat - tolerance - now
  if wait < 0 then
    wait = 0
  end
  local next_tat = tat + interval
  -- %.0f: the default number format keeps 14 digits, and these have 16.
  redis.call('SET', key, string.format('%.0f', next_tat),
    'PX', math.ceil((next_tat - now) / 1000) + 1000)
  return math.floor(wait)
end
