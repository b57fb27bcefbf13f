#!lua flags=allow-cross-slot-keys
-- The fenced writes of `fenced_write.lua` for a Redis Cluster: one call per master for every state of a
-- batch that master serves, whatever their hash slots (Redis >= 7.0). A command may only declare keys of
-- one slot, so this one declares none and names its keys in ARGV; the flag lets the script touch keys
-- of several slots, and Redis refuses any key the node does not serve ("non local key").
--
-- Nothing is written unless every key of the call is served here: all reads come first (marks, then
-- versions), through pcall, and a refused read answers "ILOGMOVED <why>" before the first write. The
-- store then sends those writes again one call per slot through the cluster client, which follows the
-- slot to its new node (a failover, a resharding, a stale slot map).
--
-- ARGV[1]         n, the number of writes
-- ARGV[2]         m, the number of marks hashes (one per hash slot of the call; 0 when not guarded)
-- ARGV[3]         g, the number of guarded partitions
-- then the g partitions, then the m marks keys (`<prefix>:{marks-<k>}` of each slot),
-- then 6 values per write: state key, expected version ("0" when the writer saw no state), new version,
--   document bytes, kind (followed by "r" when the write puts back a state the store lost: the hash
--   then gets r = 1), TTL in ms (> 0).
-- Guard: every guarded partition must have its field in the marks hash of every slot of the call (that
-- slot's shard holds the partition's state); if one is missing NOTHING is written and the call fails
-- with "ILOGLOST <partition>". Deadline entries are not written here (they live in other slots: the
-- store orders them around this call, `worker.store.redis_store`).
-- Returns what `fenced_write.lua` returns: {i1, v1, i2, v2, ...} for the fenced-out writes (1-based
-- index, version stored now, 0: none).
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local g = tonumber(ARGV[3])
local marks_at = 4 + g
local writes_at = marks_at + m
if g > 0 then
  local partitions = {}
  for j = 1, g do
    partitions[j] = ARGV[3 + j]
  end
  for k = 0, m - 1 do
    local found = redis.pcall('HMGET', ARGV[marks_at + k], unpack(partitions))
    if found.err then
      return redis.error_reply('ILOGMOVED ' .. found.err)
    end
    for j = 1, g do
      if not found[j] then
        return redis.error_reply('ILOGLOST ' .. partitions[j])
      end
    end
  end
end
local stored = {}
for i = 1, n do
  local version = redis.pcall('HGET', ARGV[writes_at + (i - 1) * 6], 'v')
  if type(version) == 'table' and version.err then
    return redis.error_reply('ILOGMOVED ' .. version.err)
  end
  stored[i] = version or '0'
end
local fenced = {}
for i = 1, n do
  local base = writes_at + (i - 1) * 6
  local key = ARGV[base]
  if stored[i] ~= ARGV[base + 1] then
    fenced[#fenced + 1] = i
    fenced[#fenced + 1] = tonumber(stored[i])
  else
    local kind = ARGV[base + 4]
    if #kind > 1 then
      kind = string.sub(kind, 1, 1)
      redis.call('HSET', key, 'r', '1')
    end
    redis.call('HSET', key, 'v', ARGV[base + 2], 'd', ARGV[base + 3], 'k', kind)
    redis.call('PEXPIRE', key, ARGV[base + 5])
  end
end
return fenced
