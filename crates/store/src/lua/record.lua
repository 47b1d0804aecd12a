-- Records that the vendor accepted a job, then releases the job's claim if
-- this caller still owns it.
-- KEYS[1] sent:<job id>   KEYS[2] inflight:<job id>
-- ARGV[1] the claim's token   ARGV[2] vendor message id ('' when none)
-- ARGV[3] how long the id is remembered, ms
-- Returns {0, ''} when this call recorded the send first, else {1, the vendor
-- message id already recorded}: the job was sent twice, the first record stays.
local earlier = redis.call('GET', KEYS[1])
if not earlier then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
if earlier then
  return {1, earlier}
end
return {0, ''}
