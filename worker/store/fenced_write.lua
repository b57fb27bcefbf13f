-- Fenced writes of many interactions' states in one call: each document is stored only if that
-- interaction's stored version is still the one the writer read, so a zombie consumer left over
-- from a rebalance cannot overwrite newer state. It stores and compares; the rules live in the
-- Python fold. Each interaction's document, TTL and deadline entry change together (one script).
--
-- KEYS[1..n]      <prefix>:{<interaction_id>}  hash: v (version), d (document), k (kind: l log | t tombstone),
--                 r (set once the state was put back after a loss; never cleared by a write)
-- KEYS[n+1..]     <prefix>:deadlines:<partition>  the deadline sets the writes touch
-- KEYS[last]      <prefix>:{marks}  the state marks (only when the call is guarded, see below)
-- ARGV[1]         n, the number of state keys
-- then 9 values per state key i, in KEYS order:
--   expected version ("0" when the writer saw no state), new version, document bytes, kind (followed
--   by "r" when the write puts back a state the store lost: the hash then gets r = 1),
--   TTL in ms (> 0), interaction id (the deadline-set member), deadline op ("a" add | "r" remove |
--   "" none), deadline-set KEYS index, deadline in ms (the score)
-- then g, the number of guarded partitions, and the g partitions.
-- Guard: when g > 0, every guarded partition must have its field in the marks hash (the store
-- holds that partition's state); if one is missing, the store lost its state and NOTHING is
-- written: the call fails with "ILOGLOST <partition>" and the fold stage restores the partition.
-- A write that is fenced out changes nothing, its deadline entry included.
-- Returns, for each fenced-out write, its 1-based index and the version stored now (0: none), flat:
-- {i1, v1, i2, v2, ...} (empty when every write was stored). A stored version below the expected
-- one means the store went backwards (a failover lost the last writes), not that another writer
-- moved on: the fold stage repairs those states before it folds them again.
local n = tonumber(ARGV[1])
local guard_at = 2 + n * 9
local g = tonumber(ARGV[guard_at] or '0')
for j = 1, g do
  local partition = ARGV[guard_at + j]
  if redis.call('HEXISTS', KEYS[#KEYS], partition) == 0 then
    return redis.error_reply('ILOGLOST ' .. partition)
  end
end
local fenced = {}
for i = 1, n do
  local base = 1 + (i - 1) * 9
  local key = KEYS[i]
  local stored = redis.call('HGET', key, 'v') or '0'
  if stored ~= ARGV[base + 1] then
    fenced[#fenced + 1] = i
    fenced[#fenced + 1] = tonumber(stored)
  else
    local kind = ARGV[base + 4]
    if #kind > 1 then
      kind = string.sub(kind, 1, 1)
      redis.call('HSET', key, 'r', '1')
    end
    redis.call('HSET', key, 'v', ARGV[base + 2], 'd', ARGV[base + 3], 'k', kind)
    redis.call('PEXPIRE', key, ARGV[base + 5])
    local op = ARGV[base + 7]
    if op == 'a' then
      redis.call('ZADD', KEYS[tonumber(ARGV[base + 8])], ARGV[base + 9], ARGV[base + 6])
    elseif op == 'r' then
      redis.call('ZREM', KEYS[tonumber(ARGV[base + 8])], ARGV[base + 6])
    end
  end
end
return fenced
