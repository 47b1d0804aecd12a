-- Reserves one permit of a GCRA rate limit and says how long to wait for it
-- (gcra_reserve.lua is prepended).
-- KEYS[1]  the limit's theoretical arrival time (TAT), µs since the epoch
-- ARGV[1]  emission interval, µs (1 / rate)
-- ARGV[2]  burst, permits
-- Returns the µs the caller sleeps before using its permit.
return gcra_reserve(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), now_us())
