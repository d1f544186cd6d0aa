-- Fragment: keep the dead-letter queue's counters and indexes exact. Included
-- (`-- @include dlq_index.lua`) by dlq_add, dlq_replay and dlq_delete, which all take
-- the same first KEYS and ARGV (hookline/dlq/store.py builds them):
--
-- KEYS[1..3]  counts by source, by source/type, by error type (keys.dlq_counts)
-- KEYS[4]     the index of every entry by time of death (keys.dlq_index)
-- ARGV[1]     entry key prefix (keys.dlq_entry(''))
-- ARGV[2]     source index prefix (keys.dlq_source_index(''))
-- ARGV[3]     type index prefix (keys.dlq_type_index(''))
-- ARGV[4]     the search-text hash (keys.dlq_search())
--
-- count(entry, delta) -> decoded entry
--   adds delta to the entry's three counters.
-- index(id, dead_at, e)
--   adds the decoded entry e to the three indexes, and its search text (source, type,
--   error type and message, the last two lower-cased, byte 31 between) to the hash.
-- remove(id) -> decoded entry, or nil when there is none
--   deletes the entry and takes it out of every counter and index.
local P = {entry = ARGV[1], source = ARGV[2], type = ARGV[3], search = ARGV[4]}
local function count(entry, delta)
  local e = cjson.decode(entry)
  local env = e['envelope']
  redis.call('HINCRBY', KEYS[1], env['source'], delta)
  redis.call('HINCRBY', KEYS[2], env['source'] .. '/' .. env['type'], delta)
  redis.call('HINCRBY', KEYS[3], e['error_type'], delta)
  return e
end
local function index(id, dead_at, e)
  local env = e['envelope']
  redis.call('ZADD', KEYS[4], dead_at, id)
  redis.call('ZADD', P.source .. env['source'], dead_at, id)
  redis.call('ZADD', P.type .. env['type'], dead_at, id)
  redis.call('HSET', P.search, id, env['source'] .. '\31' .. env['type'] .. '\31' ..
    string.lower(e['error_type']) .. '\31' .. string.lower(e['error_message']))
end
local function remove(id)
  local ekey = P.entry .. id
  local old = redis.call('GET', ekey)
  if not old then return nil end
  local e = count(old, -1)
  redis.call('DEL', ekey)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', P.source .. e['envelope']['source'], id)
  redis.call('ZREM', P.type .. e['envelope']['type'], id)
  redis.call('HDEL', P.search, id)
  return e
end
