-- Pauses an account for ARGV[1] ms unless a longer pause is already set.
-- KEYS[1]  the account's pause key
-- PTTL is negative when there is no pause (or a stray key without expiry,
-- which Herald never writes and replaces here).
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
