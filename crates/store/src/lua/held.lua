-- Takes the statuses made ready by their acceptance (record.lua moved them
-- to `ready`) and drops those held too long; each is taken by one caller.
-- KEYS[1] held (sorted set, score = when held, epoch ms)   KEYS[2] ready (list)
-- ARGV[1] the oldest hold kept, epoch ms   ARGV[2] how many to take of each
-- Returns {expired count, {ready reports}}.
local batch = tonumber(ARGV[2])
local ready = redis.call('LRANGE', KEYS[2], 0, batch - 1)
redis.call('LTRIM', KEYS[2], #ready, -1)
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, batch)
if #stale > 0 then
  redis.call('ZREM', KEYS[1], unpack(stale))
end
return {#stale, ready}
