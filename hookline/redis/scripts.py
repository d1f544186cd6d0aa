"""Lua: the scripts in ``hookline/redis/lua/``, loaded once by name, and called cheaply.

Each script is one ``.lua`` file that opens with a comment documenting its KEYS, its
ARGV and what it guarantees. :func:`load_script` reads a file once (at import of the
module that uses it) and turns it into what Redis runs:

- the opening comment is dropped, so a script sent whole (``EVAL``, as the receiver
  sends its commit with every batch) carries no documentation bytes;
- a line ``-- @include NAME.lua`` is replaced by the code of that file (its own opening
  comment dropped too), which is how scripts share fragments such as ``write_job``.
  A fragment is a file that only defines local functions; including one is plain
  concatenation, so a script sees exactly the text Redis runs.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError, ResponseError

from hookline.redis import keys

#: The directory of the ``.lua`` files (package data).
LUA_DIR = resources.files("hookline.redis") / "lua"

_INCLUDE = re.compile(r"^-- @include (?P<name>[a-z0-9_]+)\.lua$", re.MULTILINE)


@functools.cache
def lua_source(name: str) -> str:
    """The code of ``lua/NAME.lua`` as Redis runs it: its includes expanded, its
    opening comment dropped (read once per process)."""
    return read_lua(LUA_DIR, name)


def read_lua(directory: Traversable, name: str) -> str:
    """The code of ``NAME.lua`` in ``directory``, its includes expanded from there.

    Raises:
        FileNotFoundError: when there is no such file (or an included one is missing).
        ValueError: when files include each other in a cycle.
    """
    return _expand(directory, name, ())


def _expand(directory: Traversable, name: str, including: tuple[str, ...]) -> str:
    if name in including:
        raise ValueError(f"Lua include cycle: {' -> '.join((*including, name))}")
    text = (directory / f"{name}.lua").read_text(encoding="utf-8")
    code = _without_opening_comment(text)
    return _INCLUDE.sub(lambda m: _expand(directory, m["name"], (*including, name)), code)


def _without_opening_comment(text: str) -> str:
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and (lines[start].startswith("--") or not lines[start].strip()):
        if _INCLUDE.match(lines[start].rstrip("\n")):
            break
        start += 1
    return "".join(lines[start:])


@functools.cache
def load_script(name: str) -> Script:
    """The script in ``lua/NAME.lua``, read once per process (see :func:`lua_source`)."""
    return Script(lua_source(name))


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


#: Transitional, for the scripts still written inside ``hookline/workers/worker.py``
#: (issue 10 moves them into ``.lua`` files and removes this): the ``write_job``
#: fragment under its former signature, without the registry argument.
WRITE_JOB = (
    lua_source("write_job")
    + f"""
local write_job_into = write_job
local function write_job(...) return write_job_into('{keys.RQ_QUEUES}', ...) end
"""
)
