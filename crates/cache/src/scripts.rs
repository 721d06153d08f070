//! Lua scripts: each runs atomically in Redis, which is what makes "check the generations, then store"
//! and "bump the generation, then delete" race-free between processes.
//!
//! Generations: an invalidation stamps the key's (or tag's) generation key with a new value of a clock;
//! a cache-aside load reads the clock before it queries the database and stores its value only if no
//! generation it depends on is newer. The clock never goes below Redis' own `TIME` in microseconds, so
//! after a Redis restart (which empties it) a new generation is still newer than any snapshot taken before.
//! Every key this writes expires (values, tag sets, generations, the clock), so nothing accumulates.
//! Keys of other slots are touched, so this assumes a single Redis (or Sentinel), not Redis Cluster.

/// KEYS: value, key-generation, then (tag-set, tag-generation) pairs.
/// ARGV: payload, ttl in ms, snapshot or "" for an unconditional set. Returns 1 if stored.
pub(crate) const SET: &str = r"
local snap = ARGV[3]
if snap ~= '' then
  snap = tonumber(snap)
  for i = 2, #KEYS, 2 do
    local g = redis.call('GET', KEYS[i])
    if g and tonumber(g) > snap then return 0 end
  end
end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 3, #KEYS, 2 do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
";

const BUMP: &str = r"
local function bump()
  local t = redis.call('INCR', KEYS[1])
  local now = redis.call('TIME')
  local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
  if t < floor then
    t = floor
    redis.call('SET', KEYS[1], string.format('%d', t))
  end
  -- Losing the clock is harmless (the next bump starts from TIME again), so it may expire like the rest.
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return string.format('%d', t)
end
";

/// KEYS: clock, then (value, key-generation) pairs. ARGV: generation ttl in seconds.
/// Returns how many values were deleted.
pub(crate) fn invalidate_keys() -> String {
    format!(
        "{BUMP}{}",
        r"
local t = bump()
local n = 0
for i = 2, #KEYS, 2 do
  n = n + redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[i + 1], t, 'EX', ARGV[1])
end
return n
"
    )
}

/// KEYS: clock, then (tag-set, tag-generation) pairs. ARGV: generation ttl in seconds.
/// Deletes every member of each tag set; returns how many values were deleted and the members' names
/// (so the caller can drop its near-cache copies of them).
pub(crate) fn invalidate_tags() -> String {
    format!(
        "{BUMP}{}",
        r"
local t = bump()
local n = 0
local all = {}
for i = 2, #KEYS, 2 do
  redis.call('SET', KEYS[i + 1], t, 'EX', ARGV[1])
  local members = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #members, 500 do
    n = n + redis.call('DEL', unpack(members, j, math.min(j + 499, #members)))
  end
  for j = 1, #members do all[#all + 1] = members[j] end
  redis.call('DEL', KEYS[i])
end
return {n, all}
"
    )
}
