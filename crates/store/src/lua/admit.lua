-- Admits one delivery of a job to its vendor call, in one round trip and
-- atomically: nothing can send the job between the checks and the claim
-- (gcra_reserve.lua is prepended).
--
-- KEYS[1] sent:<job id>          KEYS[2] inflight:<job id>
-- KEYS[3] suppressed:<contact>   KEYS[4] pause:<account>
-- KEYS[5] inbound:<contact>      KEYS[6] rate:<account>
-- KEYS[7] pace:<contact>         KEYS[8] closed:<contact> (when the vendor closed the window)
-- ARGV[1] the claim's token      ARGV[2] how long the claim lives after the wait, ms
-- ARGV[3] '' when the window does not apply, else the oldest last-inbound
--         time (epoch ms, exclusive) that keeps it open now
-- ARGV[4] '1' when a fallback template may go if the window is closed
-- ARGV[5] shared rate interval µs, '0' for none     ARGV[6] its burst
-- ARGV[7] recipient pacing interval µs, '0' for none
--
-- Returns {verdict, number, text}:
--   {'duplicate', 0, vendor message id}   already sent
--   {'suppressed', 0, ''}                 the contact opted out
--   {'busy', ms left on the claim, ''}    another delivery holds the claim
--   {'paused', ms left on the pause, ''}  the vendor paused the account
--   {'closed', last inbound ms or -1, when the vendor closed it or ''}
--                                         window closed, no fallback
--   {'admitted' | 'fallback', µs to wait, ''}  claimed; the permits are
--                                         reserved, the call may go after the wait
local sent = redis.call('GET', KEYS[1])
if sent then
  return {'duplicate', 0, sent}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'suppressed', 0, ''}
end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then
  return {'busy', math.max(redis.call('PTTL', KEYS[2]), 0), ''}
end
local paused = redis.call('PTTL', KEYS[4])
if paused > 0 then
  return {'paused', paused, ''}
end

local verdict = 'admitted'
if ARGV[3] ~= '' then
  local last = tonumber(redis.call('GET', KEYS[5]))
  if not (last and last > tonumber(ARGV[3])) then
    if ARGV[4] ~= '1' then
      local closed = ''
      if not last then
        closed = redis.call('GET', KEYS[8]) or ''
      end
      return {'closed', last or -1, closed}
    end
    verdict = 'fallback'
  end
end

local now = now_us()
local wait = 0
local rate = tonumber(ARGV[5])
if rate > 0 then
  wait = gcra_reserve(KEYS[6], rate, tonumber(ARGV[6]), now)
end
local pacing = tonumber(ARGV[7])
if pacing > 0 then
  wait = math.max(wait, gcra_reserve(KEYS[7], pacing, 1, now))
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', math.ceil(wait / 1000) + tonumber(ARGV[2]))
return {verdict, wait, ''}
