-- commit: the receiver's group commit. Enqueues a batch of events as RQ jobs, one job
-- per group (the events of one queue under one depth limit), deduplicated, atomically.
-- Built and called by hookline/redis/commit.py (sent whole, with EVAL, per batch).
--
-- KEYS[1]       RQ's set of queue keys (keys.RQ_QUEUES)
-- then, per group:
--   queue key (keys.rq_queue), job key (keys.rq_job),
--   then per event its source's marks (keys.marks; marks.lua)
-- ARGV[1]       created time, in RQ's format (jobs.rq_timestamp())
-- ARGV[2]       number of groups
-- then, per group:
--   queue name, job id, max depth (0: none), event count, job timeout, description,
--   then per event: dedupe window in ms (0: no dedupe, and no replay guard), the marks'
--   window in ms (marks.marks_window), the id's shard number and field (marks.digest),
--   1 if a replay mark follows (else 0), [its shard number and field (marks.digest of the
--   signed body's fingerprint)], envelope (JSON)
-- ARGV[#ARGV]   the function jobs call (jobs.JOB_FUNC)
--
-- Returns one code per event, in the order of the groups: 0 enqueued, 1 duplicate,
-- 2 queue full (at its max depth), 3 queue broken (its key is not a list), 4 replay
-- (its replay mark exists: the same signed body came under another event id).
--
-- Guarantees: everything is read and checked before anything is written, so a
-- refusal or an error leaves nothing behind; each job is written before the marks of
-- its events, so there is never a mark without its job; an event seen twice in one
-- batch (by id, or by signed body) is enqueued once. A mark is kept at least the dedupe
-- window, and at most half the marks' window longer.
-- @include write_job.lua
-- @include marks.lua
local now, ngroups = ARGV[1], tonumber(ARGV[2])
local result, groups = {}, {}
local k, a, n = 2, 3, 0
local batch_seen = {}
for g = 1, ngroups do
  local qkey, jkey = KEYS[k], KEYS[k + 1]
  local qname, jid = ARGV[a], ARGV[a + 1]
  local maxdepth, count = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local timeout, descr = ARGV[a + 4], ARGV[a + 5]
  k, a = k + 2, a + 6
  local qtype = redis.call('TYPE', qkey)['ok']
  local verdict = nil
  if qtype ~= 'list' and qtype ~= 'none' then
    verdict = 3
  elseif maxdepth > 0 and redis.call('LLEN', qkey) >= maxdepth then
    verdict = 2
  end
  local kept, marks = {}, {}
  for e = 1, count do
    local meta, within, window = KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local shard, field = tonumber(ARGV[a + 2]), ARGV[a + 3]
    local rshard, rfield = nil, nil
    if ARGV[a + 4] == '1' then
      rshard, rfield = tonumber(ARGV[a + 5]), ARGV[a + 6]
      a = a + 2
    end
    local env = ARGV[a + 5]
    k, a, n = k + 1, a + 6, n + 1
    local once, ronce = meta .. '|' .. field, rfield and meta .. '|' .. rfield
    if verdict then
      result[n] = verdict
    elseif within > 0 and (batch_seen[once] or marks_find(meta, window, within, shard, field)) then
      result[n] = 1
    elseif within > 0 and rfield and
        (batch_seen[ronce] or marks_find(meta, window, within, rshard, rfield)) then
      result[n] = 4
    else
      result[n] = 0
      kept[#kept + 1] = env
      if within > 0 then
        batch_seen[once] = true
        marks[#marks + 1] = {meta, window, shard, field}
        if rfield then
          batch_seen[ronce] = true
          marks[#marks + 1] = {meta, window, rshard, rfield}
        end
      end
    end
  end
  if #kept > 0 then
    groups[#groups + 1] = {qkey, jkey, qname, jid, timeout, descr, kept, marks}
  end
end
for _, grp in ipairs(groups) do
  local qkey, jkey, qname, jid, timeout, descr, kept, marks = unpack(grp)
  write_job(KEYS[1], qkey, jkey, qname, jid, now, timeout, descr, ARGV[#ARGV], kept, false)
  for _, m in ipairs(marks) do
    marks_set(m[1], m[2], m[3], m[4], '1')
  end
end
marks_flush()
return result
