-- Takes the held statuses whose vendor id is now correlated (to be applied
-- by the caller) and drops those held too long; ZREM makes each taken once.
-- KEYS[1] held (sorted set, score = when held, epoch ms)
-- ARGV[1] the key prefix   ARGV[2] the oldest hold kept, epoch ms
-- ARGV[3] how many to look at, oldest first
-- Returns {expired count, {ready reports}}.
local ready, expired = {}, 0
local members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
for i = 1, #members, 2 do
  local member, score = members[i], tonumber(members[i + 1])
  local report = cjson.decode(member)
  local correlation = ARGV[1] .. 'vmsg:' .. report['provider'] .. ':' .. report['vendor_message_id']
  if redis.call('EXISTS', correlation) == 1 then
    redis.call('ZREM', KEYS[1], member)
    table.insert(ready, member)
  elseif score < tonumber(ARGV[2]) then
    redis.call('ZREM', KEYS[1], member)
    expired = expired + 1
  end
end
return {expired, ready}
