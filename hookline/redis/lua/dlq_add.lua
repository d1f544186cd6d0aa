-- dlq_add: dead-letter one event (hookline/dlq/store.py, DeadLetters.add).
--
-- KEYS[1..4]  counters and index, as in dlq_index.lua
-- KEYS[5]     the entry's key (keys.dlq_entry(id))
-- KEYS[6]     optional: the event's lease (keys.lease), released in the same step
-- ARGV[1..4]  the key layout, as in dlq_index.lua
-- ARGV[5]     the entry id
-- ARGV[6]     its time of death (unix seconds)
-- ARGV[7]     the entry, as JSON
-- ARGV[8]     with KEYS[6]: the lease owner; the lease is deleted only if still theirs
--
-- Returns 1. Guarantees: an entry already there under the same id (the same event dead
-- again) is replaced, not counted twice; the counters and indexes match the entries.
-- @include dlq_index.lua
remove(ARGV[5])
redis.call('SET', KEYS[5], ARGV[7])
index(ARGV[5], ARGV[6], count(ARGV[7], 1))
if KEYS[6] and redis.call('GET', KEYS[6]) == ARGV[8] then
  redis.call('DEL', KEYS[6])
end
return 1
