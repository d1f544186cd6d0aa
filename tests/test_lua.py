"""Calling Lua scripts by SHA1: what happens when Redis has lost them (restart, failover)."""

from __future__ import annotations

import pytest
import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from hookline.redis.scripts import Script, run_pipeline

# KEYS: a list. ARGV: a value. Appends it; returns the list's length.
_APPEND = Script("return redis.call('RPUSH', KEYS[1], ARGV[1])")


class TestScript:
    def test_call_loads_a_script_redis_lost(self, r: redis.Redis) -> None:
        """A direct call after the script cache was emptied loads the script and runs once."""
        r.script_flush()
        assert _APPEND(r, ["calls"], ["a"]) == 1
        assert r.lrange("calls", 0, -1) == [b"a"]
        assert r.script_exists(_APPEND.sha) == [True]

    def test_queued_source_runs_where_the_script_was_never_loaded(self, r: redis.Redis) -> None:
        """A call queued with its source runs in a plain pipeline the caller executes."""
        r.script_flush()
        with r.pipeline(transaction=False) as pipe:
            _APPEND.queue_source(pipe, ["calls"], ["a"])
            _APPEND.queue_source(pipe, ["calls"], ["b"])
            assert pipe.execute() == [1, 2]


class TestRunPipeline:
    @pytest.mark.parametrize("transaction", [False, True])
    def test_lost_scripts_run_again_and_nothing_else_does(
        self, r: redis.Redis, transaction: bool
    ) -> None:
        """After the script cache was emptied, each command of the pipeline takes effect
        once: the failed script calls run again, a counter beside them counts once."""
        r.script_flush()

        def build(pipe: Pipeline) -> None:
            _APPEND.queue(pipe, ["calls"], ["first"])
            pipe.hincrby("counter", "field", 1)
            _APPEND.queue(pipe, ["calls"], ["second"])

        results = run_pipeline(r, build, [_APPEND], transaction=transaction)
        assert results == [1, 1, 2]
        assert r.hget("counter", "field") == b"1"
        assert r.lrange("calls", 0, -1) == [b"first", b"second"]

    def test_loaded_scripts_run_in_one_pass(self, r: redis.Redis) -> None:
        """With the scripts loaded, the pipeline runs once and returns every reply in order."""
        _APPEND(r, ["warm"], ["x"])

        def build(pipe: Pipeline) -> None:
            pipe.incr("n")
            _APPEND.queue(pipe, ["calls"], ["a"])

        assert run_pipeline(r, build, [_APPEND]) == [1, 1]
        assert r.get("n") == b"1"

    def test_script_not_listed_stays_lost(self, r: redis.Redis) -> None:
        """A lost script the caller did not list cannot be loaded: NOSCRIPT is raised."""
        r.script_flush()
        with pytest.raises(NoScriptError):
            run_pipeline(r, lambda pipe: _APPEND.queue(pipe, ["calls"], ["a"]), [])
        assert r.llen("calls") == 0

    def test_other_errors_are_raised(self, r: redis.Redis) -> None:
        """A command failing for another reason raises its error, after the rest ran."""
        r.set("text", "not a list")

        def build(pipe: Pipeline) -> None:
            _APPEND.queue(pipe, ["text"], ["a"])
            pipe.incr("n")

        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            run_pipeline(r, build, [_APPEND])
        assert r.get("n") == b"1"
