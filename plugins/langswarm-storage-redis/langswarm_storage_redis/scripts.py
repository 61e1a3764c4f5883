"""Lua scripts: each runs atomically on the server, so concurrent writers on any host
see a session change all at once or not at all.

Message members are JSON objects that always begin ``{"seq":N,"status":"S",``: the
client sends the body after the status, and the scripts prepend the seq (assigned
here, from the session's ``next_seq`` counter) and rewrite the status in place, so
they never need to decode or re-encode a message.

Each write of messages (APPEND, COMMIT) carries a write token, the last of its KEYS: the
script refuses to run if that key exists, and leaves its first seq there for a minute or
two (the token TTL, ARGV[3]). When a reply is lost, RESOLVE reads the token: the first
seq if the write ran, else it sets the key (a fence) so the write can never run later,
and the write is known not applied.

Media bytes travel in the same write as the messages that reference them, so a message
is never stored without its blob, nor a blob without a reference; DELETE removes a
session's references and each blob that has no other.
"""

from __future__ import annotations

__all__ = ["APPEND", "COMMIT", "CREATE", "DELETE", "LIST", "RESOLVE", "SAVE", "SCHEMA",
           "SET_STATUS", "TAIL"]

#: The layout of the keys and members these scripts write. 1 is release 0.1.0's;
#: 2 adds message parts (an optional ``parts`` member field, absent for text-only
#: messages) and the blob store, both readable alongside data of version 1.
SCHEMA_VERSION = 2

# KEYS: schema marker. ARGV: this version. The stored version if it is newer than this
# one (the caller refuses it); else 0, with this version recorded. No marker: version 1.
SCHEMA = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '1')
local mine = tonumber(ARGV[1])
if stored > mine then return stored end
if stored < mine then redis.call('SET', KEYS[1], mine) end
return 0
"""

# Shared: extend the expiry of a session's blobs (and of the sets that reference them)
# to at least ``ttl``. A blob lives as long as the longest-lived session that has it.
_REFRESH_BLOBS = """
local function refresh_blobs(set_key, prefix, ttl)
  redis.call('EXPIRE', set_key, ttl)
  for _, sha in ipairs(redis.call('SMEMBERS', set_key)) do
    redis.call('EXPIRE', prefix .. 'blob:' .. sha, ttl, 'GT')
    redis.call('EXPIRE', prefix .. 'blobrefs:' .. sha, ttl, 'GT')
  end
end
"""

# KEYS: session, all-index, user-index. ARGV: record, user_id, updated_at, version,
# session_id, ttl (0 = none). Returns 0 if the id is taken.
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'user_id', ARGV[2],
           'updated_at', ARGV[3], 'version', ARGV[4], 'next_seq', 1)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
local ttl = tonumber(ARGV[6])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""

# KEYS: session, messages, all-index, user-index, session-blobs. ARGV: record, user_id,
# updated_at, expected version, session_id, ttl, user-index key of the stored user (if it
# changed), key prefix. Returns {new version} or {-1} (missing) or {-2, stored version}.
SAVE = _REFRESH_BLOBS + """
local cur = redis.call('HMGET', KEYS[1], 'version', 'user_id')
if not cur[1] then return {-1} end
if cur[1] ~= ARGV[4] then return {-2, cur[1]} end
local version = tonumber(cur[1]) + 1
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'user_id', ARGV[2],
           'updated_at', ARGV[3], 'version', version)
-- The saved record is whole again: drop what commits kept beside it (see COMMIT).
redis.call('HDEL', KEYS[1], 'u_in', 'u_out', 'u_cached', 'pstate')
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[5])
if cur[2] ~= ARGV[2] then redis.call('ZREM', ARGV[7] .. cur[2], ARGV[5]) end
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  refresh_blobs(KEYS[5], ARGV[8], ttl)
end
return {version}
"""

# KEYS: session, messages, all-index, session-blobs. ARGV: session_id, user-index key
# prefix, key prefix. Returns 1 if the session existed. The session's references go
# with it, and each blob no other session references.
DELETE = """
local uid = redis.call('HGET', KEYS[1], 'user_id')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
for _, sha in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local refs = ARGV[3] .. 'blobrefs:' .. sha
  redis.call('SREM', refs, ARGV[1])
  if redis.call('SCARD', refs) == 0 then
    redis.call('DEL', refs, ARGV[3] .. 'blob:' .. sha)
  end
end
redis.call('DEL', KEYS[4])
if not uid then return 0 end
redis.call('ZREM', ARGV[2] .. uid, ARGV[1])
return 1
"""

# Shared by APPEND and COMMIT, whose KEYS begin session, messages, session-blobs and end
# with the write token, and whose ARGV begin: pending seqs ('' = none, else "3,5,8"),
# ttl, token ttl, session_id, key prefix, r (blob references), k (of them new bytes),
# then __EXTRA__ arguments of the script's own, then r sha256s (the k first have bytes),
# the k byte strings, and the message bodies. A write refuses to run twice, or after
# RESOLVE fenced it (-2); -1 if the session is gone. It removes the placeholders that
# are not committed, appends the bodies with consecutive seqs (``first`` is the first),
# stores new bytes once and records the session's references to them.
_WRITE = _REFRESH_BLOBS + """
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return -2 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local ttl, sid, prefix = tonumber(ARGV[2]), ARGV[4], ARGV[5]
local r, k = tonumber(ARGV[6]), tonumber(ARGV[7])
local o = 7 + __EXTRA__
if ARGV[1] ~= '' then
  for pseq in string.gmatch(ARGV[1], '[^,]+') do
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], pseq, pseq)) do
      if not string.find(m, '^{"seq":%-?%d+,"status":"committed"') then
        redis.call('ZREM', KEYS[2], m)
      end
    end
  end
end
local b = o + r + k + 1
local n = #ARGV - b + 1
local after = redis.call('HINCRBY', KEYS[1], 'next_seq', n)
local first = after - n
for i = 1, n do
  local seq = first + i - 1
  redis.call('ZADD', KEYS[2], seq, '{"seq":' .. seq .. ',' .. ARGV[b + i - 1])
end
for i = 1, r do
  local sha = ARGV[o + i]
  local blob, refs = prefix .. 'blob:' .. sha, prefix .. 'blobrefs:' .. sha
  if i <= k then
    if ttl > 0 then
      redis.call('SET', blob, ARGV[o + r + i], 'NX', 'EX', ttl)
    else
      redis.call('SET', blob, ARGV[o + r + i], 'NX')
    end
  end
  redis.call('SADD', refs, sid)
  redis.call('SADD', KEYS[3], sha)
  if ttl <= 0 then  -- a session that never expires keeps its blobs for good
    redis.call('PERSIST', blob)
    redis.call('PERSIST', refs)
  else  -- the references expire with the blob, which lives at least ``ttl``
    redis.call('EXPIRE', blob, ttl, 'GT')
    local left = redis.call('TTL', blob)
    if left == -1 then redis.call('PERSIST', refs) elseif left > 0 then
      redis.call('EXPIRE', refs, left)
    end
  end
end
"""

_WRITE_END = """
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  refresh_blobs(KEYS[3], prefix, ttl)
end
redis.call('SET', KEYS[#KEYS], first, 'EX', ARGV[3])
return first
"""

# KEYS: session, messages, session-blobs, write token. ARGV: as _WRITE says, no extra.
# Returns the first seq, -1 if the session does not exist, -2 if the token is used.
APPEND = _WRITE.replace("__EXTRA__", "0") + _WRITE_END

# KEYS: session, messages, session-blobs, all-index, write token. ARGV: as _WRITE says,
# with 5 extra: input, output and cached tokens to add, provider state JSON ('' = keep),
# updated_at. APPEND plus the session-record update of commit_turn, atomically;
# returns like APPEND.
# The record JSON is never decoded and re-encoded here (cjson would round timestamps):
# usage totals live beside it in u_in/u_out/u_cached (HINCRBY, so concurrent commits
# add up exactly; seeded from the record's own usage the first time), a replaced
# provider state in pstate; readers overlay them, and SAVE folds them back.
COMMIT = (
    _WRITE.replace("__EXTRA__", "5")
    + """
if redis.call('HEXISTS', KEYS[1], 'u_in') == 0 then
  local usage = cjson.decode(redis.call('HGET', KEYS[1], 'record'))['usage']
  if type(usage) ~= 'table' then usage = {} end
  redis.call('HSET', KEYS[1], 'u_in', tonumber(usage['input_tokens']) or 0,
             'u_out', tonumber(usage['output_tokens']) or 0,
             'u_cached', tonumber(usage['cached_tokens']) or 0)
end
redis.call('HINCRBY', KEYS[1], 'u_in', ARGV[8])
redis.call('HINCRBY', KEYS[1], 'u_out', ARGV[9])
redis.call('HINCRBY', KEYS[1], 'u_cached', ARGV[10])
if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'pstate', ARGV[11]) end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'updated_at', ARGV[12])
redis.call('ZADD', KEYS[4], ARGV[12], sid)
local uid = redis.call('HGET', KEYS[1], 'user_id')
if uid then redis.call('ZADD', prefix .. 'user:' .. uid, ARGV[12], sid) end
"""
    + _WRITE_END
)

# KEYS: write token. ARGV: token ttl. What became of the write that carried the token:
# its first seq (as a string) if it ran; else the token is fenced so that write can never
# run, and 'fenced' is returned. Idempotent: asking again gives the same answer.
RESOLVE = """
local outcome = redis.call('GET', KEYS[1])
if outcome then return outcome end
redis.call('SET', KEYS[1], 'fenced', 'EX', ARGV[1])
return 'fenced'
"""

# KEYS: messages. ARGV: status, seqs...
SET_STATUS = """
for i = 2, #ARGV do
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[i], ARGV[i])) do
    local seq, rest = string.match(m, '^{"seq":(%-?%d+),"status":"%a+",(.*)$')
    if rest then
      redis.call('ZREM', KEYS[1], m)
      redis.call('ZADD', KEYS[1], seq,
                 '{"seq":' .. seq .. ',"status":"' .. ARGV[1] .. '",' .. rest)
    end
  end
end
return 1
"""

# KEYS: messages. ARGV: n, lowest score (exclusive form '(S' or '-inf'), statuses...
# The newest n messages with one of the statuses, newest first. Walks back in batches,
# so it reads about n members when few are filtered out, never the whole history.
TAIL = """
local want = {}
for i = 3, #ARGV do want[ARGV[i]] = true end
local n = tonumber(ARGV[1])
local out = {}
local top = '+inf'
local batch = math.max(n, 16)
while #out < n do
  local ms = redis.call('ZREVRANGEBYSCORE', KEYS[1], top, ARGV[2],
                        'WITHSCORES', 'LIMIT', 0, batch)
  for i = 1, #ms, 2 do
    if want[string.match(ms[i], '^{"seq":%-?%d+,"status":"(%a+)"')] then
      out[#out + 1] = ms[i]
      if #out >= n then break end
    end
    top = '(' .. ms[i + 1]
  end
  if #ms < batch * 2 then break end
end
return out
"""

# KEYS: index. ARGV: cursor ('' = first page), limit. Session ids, newest first;
# false if the cursor is not in the index.
LIST = """
local start = 0
if ARGV[1] ~= '' then
  local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
  if not rank then return false end
  start = rank + 1
end
return redis.call('ZREVRANGE', KEYS[1], start, start + tonumber(ARGV[2]) - 1)
"""
