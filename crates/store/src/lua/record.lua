-- Records that the vendor accepted a job, then releases the job's claim if
-- this caller still owns it. The first record also writes the job's
-- lifecycle record and, when the vendor gave an id, its correlation.
-- KEYS[1] sent:<job id>   KEYS[2] inflight:<job id>
-- KEYS[3] vmsg:<provider>:<vendor id>   KEYS[4] status:<job id>
-- KEYS[5] held:<provider>:<vendor id>   KEYS[6] held   KEYS[7] ready (list)
-- (statuses that came before this acceptance move to `ready`, where the
-- API's sweep takes them)
-- ARGV[1] the claim's token   ARGV[2] vendor message id ('' when none)
-- ARGV[3] how long the id is remembered, ms   ARGV[4] the job id
-- ARGV[5..] the lifecycle record's fields and values
-- Returns {0, ''} when this call recorded the send first, else {1, the vendor
-- message id already recorded}: the job was sent twice, the first record stays.
local earlier = redis.call('GET', KEYS[1])
if not earlier then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[4], unpack(ARGV, 5))
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
  if ARGV[2] ~= '' then
    redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
    local waiting = redis.call('SMEMBERS', KEYS[5])
    if #waiting > 0 then
      redis.call('ZREM', KEYS[6], unpack(waiting))
      redis.call('RPUSH', KEYS[7], unpack(waiting))
      redis.call('DEL', KEYS[5])
    end
  end
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
if earlier then
  return {1, earlier}
end
return {0, ''}
