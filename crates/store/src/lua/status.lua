-- Applies one status report to its job's lifecycle, atomically, or holds it
-- when its vendor id is not correlated yet. Mirrors lifecycle::change: a
-- status already in the timeline changes nothing; a new one joins the
-- timeline and moves the state only when its rank is higher.
-- KEYS[1] vmsg:<provider>:<vendor id>   KEYS[2] held (sorted set, for expiry)
-- KEYS[3] held:<provider>:<vendor id> (set: what waits for this message)
-- ARGV[1] the key prefix   ARGV[2] the status   ARGV[3] its rank
-- ARGV[4] its timeline entry (JSON)   ARGV[5] now, epoch ms
-- ARGV[6] the report (JSON), held if uncorrelated
-- ARGV[7] '1' when this report asks for the job's fallback template
-- ARGV[8] how long a status is held, ms
-- Returns {verdict, job id, 1 when this caller sends the fallback, record}:
-- verdict 'held' | 'forgotten' | 'advanced' | 'recorded' | 'repeated'.
local job = redis.call('GET', KEYS[1])
if not job then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[5], ARGV[6])
  redis.call('SADD', KEYS[3], ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
  return {'held', '', 0, {}}
end
local record = ARGV[1] .. 'status:' .. job
if redis.call('EXISTS', record) == 0 then
  return {'forgotten', job, 0, {}}
end
local verdict = 'repeated'
local seen = redis.call('HGET', record, 'seen') or '|'
if not string.find(seen, '|' .. ARGV[2] .. '|', 1, true) then
  local timeline = redis.call('HGET', record, 'timeline') or '[]'
  if timeline == '[]' then
    timeline = '[' .. ARGV[4] .. ']'
  else
    timeline = string.sub(timeline, 1, -2) .. ',' .. ARGV[4] .. ']'
  end
  redis.call('HSET', record, 'seen', seen .. ARGV[2] .. '|', 'timeline', timeline)
  verdict = 'recorded'
  if tonumber(ARGV[3]) > tonumber(redis.call('HGET', record, 'rank') or '0') then
    redis.call('HSET', record, 'state', ARGV[2], 'rank', ARGV[3])
    verdict = 'advanced'
  end
end
local fallback = 0
if ARGV[7] == '1' and redis.call('HGET', record, 'state') == 'failed' then
  local accepted = cjson.decode(redis.call('HGET', record, 'job'))
  if accepted['fallback_template'] and redis.call('HGET', record, 'fallback_used') ~= '1' then
    fallback = redis.call('HSETNX', record, 'fallback_job', job .. ':fallback')
  end
end
return {verdict, job, fallback, redis.call('HGETALL', record)}
