"""Lua scripts: the .lua files and their loader, and calling scripts by SHA1 (what
happens when Redis has lost them: restart, failover)."""

from __future__ import annotations

import pathlib

import pytest
import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from hookline.redis.scripts import LUA_DIR, Script, lua_source, read_lua, run_pipeline

_FILES = sorted(pathlib.Path(str(LUA_DIR)).glob("*.lua"))
#: Files that only define local functions for scripts to include.
_FRAGMENTS = [f for f in _FILES if f.read_text().startswith("-- Fragment:")]
_SCRIPTS = [f for f in _FILES if f not in _FRAGMENTS]


def _opening_comment(path: pathlib.Path) -> str:
    """The comment lines a .lua file opens with."""
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("--"):
            break
        header.append(line)
    return "\n".join(header)


class TestLuaFiles:
    def test_every_script_documents_its_keys_and_argv(self) -> None:
        """Each script file opens with a comment that names its KEYS and its ARGV."""
        assert _SCRIPTS
        for path in _SCRIPTS:
            header = _opening_comment(path)
            assert "KEYS" in header and "ARGV" in header, path.name

    def test_every_fragment_documents_its_functions(self) -> None:
        """Each fragment's opening comment shows the signature of each function it defines."""
        assert _FRAGMENTS
        for path in _FRAGMENTS:
            header = _opening_comment(path)
            for line in path.read_text().splitlines():
                if line.startswith("local function "):
                    name = line.removeprefix("local function ").split("(")[0]
                    assert f"{name}(" in header, (path.name, name)

    @pytest.mark.parametrize("path", _SCRIPTS, ids=lambda p: p.stem)
    def test_every_script_compiles_in_redis(self, r: redis.Redis, path: pathlib.Path) -> None:
        """Redis accepts each script as loaded (includes expanded), without running it."""
        source = lua_source(path.stem)
        assert r.script_load(source) == Script(source).sha

    def test_loaded_code_has_no_opening_comment_and_no_include_left(self) -> None:
        """What Redis is sent is code: the documentation and the include lines are gone."""
        for path in _SCRIPTS:
            source = lua_source(path.stem)
            assert not source.startswith("--"), path.name
            assert "@include" not in source, path.name

    def test_an_include_is_replaced_by_the_fragments_code(self, tmp_path: pathlib.Path) -> None:
        """An include line becomes the included file's code, nested includes too."""
        (tmp_path / "inner.lua").write_text("-- Fragment: inner\nlocal function f() end\n")
        (tmp_path / "middle.lua").write_text(
            "-- Fragment: middle\n-- @include inner.lua\nlocal function g() end\n"
        )
        (tmp_path / "top.lua").write_text(
            "-- top. KEYS: none. ARGV: none.\n-- @include middle.lua\nreturn 1\n"
        )
        assert read_lua(tmp_path, "top") == (
            "local function f() end\n\nlocal function g() end\n\nreturn 1\n"
        )

    def test_an_include_cycle_is_refused(self, tmp_path: pathlib.Path) -> None:
        """Files that include each other raise an error naming the cycle, not a recursion."""
        (tmp_path / "a.lua").write_text("-- @include b.lua\n")
        (tmp_path / "b.lua").write_text("-- @include a.lua\n")
        with pytest.raises(ValueError, match="a -> b -> a"):
            read_lua(tmp_path, "a")

    def test_a_missing_include_is_an_error(self, tmp_path: pathlib.Path) -> None:
        """An include naming no file fails at load time, not as a Lua error in Redis."""
        (tmp_path / "a.lua").write_text("-- @include nowhere.lua\nreturn 1\n")
        with pytest.raises(FileNotFoundError):
            read_lua(tmp_path, "a")


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
