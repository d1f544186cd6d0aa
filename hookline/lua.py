"""Lua: fragments shared by the scripts that write RQ jobs, and calling scripts cheaply."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

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


class Script:
    """A Lua script called by its SHA1, in pipelines too.

    redis-py's own Script objects make every pipeline that holds one send SCRIPT EXISTS
    first: a round trip per pipeline on the workers' hottest path. Here the script is
    loaded once and called with EVALSHA; after a Redis restart empties the script cache,
    :func:`run_pipeline` loads the scripts again and runs the (idempotent) pipeline anew.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Add a call to ``pipe``."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)

    def __call__(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Call it now, loading it first if the server does not know it."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)


def run_pipeline(
    client: redis.Redis,
    build: Callable[[Pipeline], None],
    scripts: Sequence[Script],
    *,
    transaction: bool = False,
) -> list[Any]:
    """Build and execute a pipeline; if Redis lost its scripts, load them and run it again.

    ``build`` must be idempotent as a whole: after a NOSCRIPT error part of it may have run.
    """
    for attempt in (1, 2):
        with client.pipeline(transaction=transaction) as pipe:
            build(pipe)
            try:
                return list(pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
                for script in scripts:
                    client.script_load(script.source)
    raise AssertionError("unreachable")
