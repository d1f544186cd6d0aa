-- commit: the receiver's group commit. Enqueues a batch of events as RQ jobs, one job
-- per group (the events of one queue under one depth limit), deduplicated, atomically.
-- Built and called by hookline/redis/commit.py (sent whole, with EVAL, per batch).
--
-- KEYS[1]       RQ's set of queue keys (keys.RQ_QUEUES)
-- then, per group:
--   queue key (keys.rq_queue), job key (keys.rq_job),
--   then per event its dedupe key (keys.seen) and, if it has one, its replay key
--   (keys.replay)
-- ARGV[1]       created time, in RQ's format (jobs.rq_timestamp())
-- ARGV[2]       number of groups
-- then, per group:
--   queue name, job id, max depth (0: none), event count, job timeout, description,
--   then per event: dedupe ttl in ms (0: no dedupe; a replay marker lives as long),
--   1 if a replay key follows its dedupe key (else 0), envelope (JSON)
-- ARGV[#ARGV]   the function jobs call (jobs.JOB_FUNC)
--
-- Returns one code per event, in the order of the groups: 0 enqueued, 1 duplicate,
-- 2 queue full (at its max depth), 3 queue broken (its key is not a list), 4 replay
-- (its replay marker exists: the same signed body came under another event id).
--
-- Guarantees: everything is read and checked before anything is written, so a
-- refusal or an error leaves nothing behind; each job is written before the dedupe
-- markers that point at it, so there is never a marker without its job; an event seen
-- twice in one batch (by id, or by replay key) is enqueued once.
-- @include write_job.lua
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
    local skey, ttl, env = KEYS[k], tonumber(ARGV[a]), ARGV[a + 2]
    local rkey = nil
    if ARGV[a + 1] == '1' then
      rkey = KEYS[k + 1]
      k = k + 1
    end
    k, a, n = k + 1, a + 3, n + 1
    if verdict then
      result[n] = verdict
    elseif ttl > 0 and (batch_seen[skey] or redis.call('EXISTS', skey) == 1) then
      result[n] = 1
    elseif rkey and (batch_seen[rkey] or redis.call('EXISTS', rkey) == 1) then
      result[n] = 4
    else
      result[n] = 0
      kept[#kept + 1] = env
      if ttl > 0 then
        batch_seen[skey] = true
        marks[#marks + 1] = {skey, ttl}
        if rkey then
          batch_seen[rkey] = true
          marks[#marks + 1] = {rkey, ttl}
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
    redis.call('SET', m[1], jid, 'PX', m[2])
  end
end
return result
