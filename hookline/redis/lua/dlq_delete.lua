-- dlq_delete: remove dead letters for good (hookline/dlq/store.py, DeadLetters.delete).
--
-- KEYS[1..4]  counters and index, as in dlq_index.lua
-- ARGV[1..4]  the key layout, as in dlq_index.lua
-- ARGV[5..]   the entry ids
--
-- Returns the ids that existed. Guarantees: each entry leaves every counter and index
-- with it.
-- @include dlq_index.lua
local removed = {}
for i = 5, #ARGV do
  if remove(ARGV[i]) then removed[#removed + 1] = ARGV[i] end
end
return removed
