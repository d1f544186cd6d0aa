"""Lua fragments shared by the scripts that write RQ jobs."""

from __future__ import annotations

#: ``write_job(qkey, jkey, qname, jid, now, timeout, descr, func, envelopes)``: write one
#: RQ job carrying ``envelopes`` (a Lua list of JSON strings) and push it onto its queue.
WRITE_JOB = """
local function write_job(qkey, jkey, qname, jid, now, timeout, descr, func, envelopes, front)
  local data = '["' .. func .. '",null,[[' .. table.concat(envelopes, ',') .. ']],{}]'
  redis.call('HSET', jkey, 'data', data, 'created_at', now, 'enqueued_at', now,
    'origin', qname, 'status', 'queued', 'timeout', timeout, 'description', descr,
    'worker_name', '', 'started_at', '', 'ended_at', '', 'last_heartbeat', '')
  if front then
    redis.call('LPUSH', qkey, jid)
  else
    redis.call('RPUSH', qkey, jid)
  end
  redis.call('SADD', 'rq:queues', qkey)
end
"""
