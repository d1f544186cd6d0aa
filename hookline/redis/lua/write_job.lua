-- Fragment: write one RQ job. Included (`-- @include write_job.lua`) by every script
-- that creates a job; hookline/redis/jobs.py holds the Python side of the same format
-- (the function, the timeout, the time format, and the reader of the job's data).
--
-- write_job(registry, qkey, jkey, qname, jid, now, timeout, descr, func, envelopes, front)
--   registry   RQ's set of queue keys (keys.RQ_QUEUES)
--   qkey       the queue's list (keys.rq_queue(qname))
--   jkey       the job's hash (keys.rq_job(jid))
--   qname      the queue's name (the job's origin)
--   jid        the job's id
--   now        created/enqueued time, in RQ's format (jobs.rq_timestamp())
--   timeout    RQ's job timeout in seconds (jobs.JOB_TIMEOUT)
--   descr      the job's description, as `rq info` shows it
--   func       the function the job calls (jobs.JOB_FUNC)
--   envelopes  a Lua list of envelopes, each a JSON string, written as they are
--   front      true: push the job id to the front of the queue (it runs next)
--
-- Guarantees: the job hash is complete (every field RQ 2 reads, so `rq worker -S json`
-- can run it) before its id is in the queue, and the queue is in RQ's registry. The
-- job's data is RQ's JSON form of func(envelopes): [func, null, [envelopes], {}].
local function write_job(registry, qkey, jkey, qname, jid, now, timeout, descr, func,
                         envelopes, front)
  local data = '["' .. func .. '",null,[[' .. table.concat(envelopes, ',') .. ']],{}]'
  redis.call('HSET', jkey, 'data', data, 'created_at', now, 'enqueued_at', now,
    'origin', qname, 'status', 'queued', 'timeout', timeout, 'description', descr,
    'worker_name', '', 'started_at', '', 'ended_at', '', 'last_heartbeat', '')
  if front then
    redis.call('LPUSH', qkey, jid)
  else
    redis.call('RPUSH', qkey, jid)
  end
  redis.call('SADD', registry, qkey)
end
