-- Releases a job's claim, only for the claim's owner: a claim that expired
-- and was taken by another delivery stays that delivery's.
-- KEYS[1] inflight:<job id>   ARGV[1] the claim's token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
