-- Moves a contact's last-inbound time forward, never back.
-- KEYS[1]  the contact's inbound key
-- ARGV[1]  the inbound message's time, epoch ms
-- ARGV[2]  when the key expires, epoch ms (that time + window + 1 h)
-- Returns the value stored afterwards.
--
-- One script, so late or duplicate webhooks and concurrent writers cannot
-- interleave between the read and the write.
local stored = tonumber(redis.call('GET', KEYS[1]))
local at = tonumber(ARGV[1])
if stored and stored >= at then
  return stored
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return at
