-- Fenced write of one interaction's state: stores the new document only if the stored version is
-- still the one the writer read, so a zombie consumer left over from a rebalance cannot overwrite
-- newer state. It stores and compares; the rules live in the Python fold.
--
-- KEYS[1]  <prefix>:{<interaction_id>}  hash: v (version), d (document), k (kind: l log | t tombstone)
-- ARGV[1]  expected version ("0" when the writer saw no state)
-- ARGV[2]  new version
-- ARGV[3]  document bytes
-- ARGV[4]  kind
-- ARGV[5]  TTL in ms (> 0)
-- Returns 1 when written, else {0, <stored version>}.
local stored = redis.call('HGET', KEYS[1], 'v') or '0'
if stored ~= ARGV[1] then
  return {0, stored}
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3], 'k', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
