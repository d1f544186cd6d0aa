-- marks_state: the state of one event in its source's marks (see marks.lua), for
-- operators' tools and tests. Called by hookline/redis/marks.py.
--
-- KEYS[1]  the source's marks (keys.marks)
-- ARGV[1]  the marks' window, in ms (marks.marks_window)
-- ARGV[2]  the event id's shard number (marks.digest)
-- ARGV[3]  the event id's field (marks.digest)
--
-- Returns 0 (no mark within the window), 1 (seen) or 2 (done). Reads only.
-- @include marks.lua
local window = tonumber(ARGV[1])
local state = marks_find(KEYS[1], window, window, tonumber(ARGV[2]), ARGV[3])
return tonumber(state or '0')
