-- Reserves one permit of a GCRA rate limit and says how long to wait for it.
-- KEYS[1]  the limit's theoretical arrival time (TAT), µs since the epoch
-- ARGV[1]  emission interval, µs (1 / rate)
-- ARGV[2]  burst, permits
-- Returns the µs the caller sleeps before using its permit.
--
-- Reserving (instead of answering "not yet, ask again") makes every permit
-- one round trip, and Redis's own TIME gives every replica the same clock.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local wait = tat - tolerance - now
if wait < 0 then
  wait = 0
end
local next_tat = tat + interval
-- %.0f: the default number format keeps 14 digits, and these have 16.
redis.call('SET', KEYS[1], string.format('%.0f', next_tat),
  'PX', math.ceil((next_tat - now) / 1000) + 1000)
return math.floor(wait)
