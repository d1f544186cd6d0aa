"""Lua: fragments shared by the scripts that write RQ jobs, and calling scripts cheaply."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

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
    a direct call loads it and calls again, and :func:`run_pipeline` loads the scripts of
    the calls that failed and runs those calls again.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Add a call to ``pipe``, a pipeline that :func:`run_pipeline` runs with this script."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)

    def queue_source(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Add a call that carries the whole source (EVAL) to ``pipe``, however it is run.

        For a pipeline its caller executes: nothing would load the script there if Redis
        lacked it, so each call costs the source's bytes instead.
        """
        pipe.eval(self.source, len(keys), *keys, *args)

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
    """Build and execute a pipeline; script calls that Redis could not run are run again.

    After a restart or a failover empties Redis's script cache, the pipeline's calls of
    ``scripts`` fail with NOSCRIPT while its other commands take effect. Those scripts are
    then loaded and only the failed calls run again, in order, in a second pipeline (a
    second transaction with ``transaction``): every command takes effect once, and a
    counter in the pipeline counts once. The calls run again come after the commands
    queued behind them, so ``build`` must not queue a command that relies on an earlier
    script call of the same pipeline having run first.

    Raises:
        redis.ResponseError: the first command that failed (a NOSCRIPT error only if the
            script is not in ``scripts``).
    """
    with client.pipeline(transaction=transaction) as pipe:
        build(pipe)
        commands = list(pipe.command_stack)
        results = list(pipe.execute(raise_on_error=False))
    lost = [
        n
        for n, result in enumerate(results)
        if isinstance(result, NoScriptError) and commands[n][0][0] == "EVALSHA"
    ]
    if lost:
        shas = {str(commands[n][0][1]) for n in lost}
        for script in scripts:
            if script.sha in shas:
                client.script_load(script.source)
        with client.pipeline(transaction=transaction) as pipe:
            for n in lost:
                pipe.evalsha(*commands[n][0][1:])
            for n, result in zip(lost, pipe.execute(raise_on_error=False), strict=True):
                results[n] = result
    for n, result in enumerate(results):
        if isinstance(result, ResponseError):
            result.add_note(f"command #{n + 1} of the pipeline: {commands[n][0][0]}")
            raise result
    return results
