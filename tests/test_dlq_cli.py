"""``hookline dlq``: what an operator on call can count on, against a real Redis."""

from __future__ import annotations

import os
import pty
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from click.testing import CliRunner, Result

from hookline.cli.main import main
from hookline.dlq.files import atomic_file
from hookline.dlq.format import age
from hookline.dlq.ops import Pacer
from hookline.dlq.search import Filter, Search, glob_match
from hookline.dlq.store import DeadLetter, DeadLetters, entry_id
from hookline.envelope import Envelope
from hookline.redis import keys
from hookline.redis.connection import as_str
from hookline.redis.embedded import EmbeddedRedis, free_port
from hookline.redis.jobs import parse_job_data
from tests.worker_support import (
    ROOT,
    drain,
    effects,
    enqueue,
    envelope,
    worker_settings,
    write_config,
)

#: The command, as a process.
HOOKLINE = [sys.executable, "-m", "hookline"]
#: Environment for the command: nothing inherited says where Redis is.
CLEAN_ENV: dict[str, str | None] = {"HOOKLINE_REDIS_URL": None, "HOOKLINE_CONFIG": None}


def dead(
    dead_letters: DeadLetters,
    event_id: str,
    *,
    source: str = "test",
    event_type: str = "thing",
    error: str = "ConnectionError",
    message: str = "downstream unavailable",
    ago: float = 0.0,
    attempts: int = 3,
    queue: str = "hookline",
    body: bytes | None = None,
) -> DeadLetter:
    """Dead-letter an event as a worker would, its attempts recorded, ``ago`` seconds ago."""
    env = envelope(event_id, source=source, event_type=event_type)
    records = [
        {
            "at": time.time() - ago - (attempts - n),
            "error_type": error,
            "message": f"{message} (attempt {n})",
            "traceback": f"Traceback (most recent call last):\n  line {n}\n{error}: {message}",
            "worker": "host.1.abc",
            "seconds": 0.01,
        }
        for n in range(1, attempts + 1)
    ]
    env = Envelope(
        env.source,
        env.id,
        env.type,
        env.received_at - ago,
        env.headers,
        env.body if body is None else body,
        queue,
        records,
    )
    return dead_letters.add(env, reason="exhausted", worker="host.1.abc", now=time.time() - ago)


def queued(r: redis.Redis, queue: str = "hookline") -> Counter[str]:
    """How many times each event id is carried by a job waiting in ``queue``."""
    found: Counter[str] = Counter()
    for job_id in r.lrange(keys.rq_queue(queue), 0, -1):
        data = r.hget(keys.rq_job(as_str(job_id)), "data")
        assert isinstance(data, bytes)
        found.update(env.id for env in parse_job_data(data))
    return found


def queued_envelopes(r: redis.Redis, queue: str = "hookline") -> list[Envelope]:
    """The envelopes carried by the jobs waiting in ``queue``."""
    out = []
    for job_id in r.lrange(keys.rq_queue(queue), 0, -1):
        data = r.hget(keys.rq_job(as_str(job_id)), "data")
        assert isinstance(data, bytes)
        out += parse_job_data(data)
    return out


@pytest.fixture
def dl(r: redis.Redis) -> DeadLetters:
    """The dead letters of the shared (emptied) server."""
    return DeadLetters(r)


@pytest.fixture
def config(tmp_path: Path, redis_url: str) -> Path:
    """A configuration file naming the shared server."""
    return write_config(tmp_path / "hookline.toml", redis_url)


class Cli:
    """Runs ``hookline dlq ...`` in-process with ``--config``, nothing from the environment."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(
            main, ["dlq", *args, "--config", str(self.config)], input=input, env=CLEAN_ENV
        )


@pytest.fixture
def cli(config: Path) -> Cli:
    """The command, configured for the shared server."""
    return Cli(config)


def ids_of(result: Result) -> list[str]:
    """The ids in the first column of a ``list`` table."""
    return re.findall(r"^([0-9a-f]{20})  ", result.stdout, re.MULTILINE)


class TestStats:
    def test_counts_by_source_type_and_error_with_ages(self, cli: Cli, dl: DeadLetters) -> None:
        """Stats count by source, source/type and error type and give oldest and newest age."""
        dead(dl, "a", ago=7200)
        dead(dl, "b", error="TimeoutError", ago=60)
        dead(dl, "c", source="strict", event_type="invoice.paid", ago=5)
        result = cli("stats")
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "3 dead letters; oldest died 2h00m ago, newest 5s ago" in out
        assert out.index("by source") < out.index("test ") < out.index("by type")
        assert "test/thing" in out and "strict/invoice.paid" in out
        assert "ConnectionError" in out and "TimeoutError" in out

    def test_json_matches_the_counters(self, cli: Cli, dl: DeadLetters) -> None:
        """``stats --json`` gives the same counts as one object."""
        dead(dl, "a")
        dead(dl, "b", error="TimeoutError")
        data = orjson.loads(cli("stats", "--json").stdout)
        assert data["total"] == 2
        assert data["by_source"] == {"test": 2}
        assert data["by_type"] == {"test/thing": 2}
        assert data["by_error"] == {"ConnectionError": 1, "TimeoutError": 1}
        assert data["oldest"] <= data["newest"]

    def test_empty_queue_says_so(self, cli: Cli) -> None:
        """With no dead letters, stats says the queue is empty."""
        result = cli("stats")
        assert result.exit_code == 0
        assert "empty" in result.stdout


class TestList:
    def test_table_newest_first_with_every_column(self, cli: Cli, dl: DeadLetters) -> None:
        """The table shows id, age, source, type, event id, error, attempts and message."""
        old = dead(dl, "old-event", ago=3600)
        new = dead(dl, "new-event", message="x" * 500)
        result = cli("list")
        assert result.exit_code == 0, result.output
        header, *rows = result.stdout.splitlines()
        assert header.split() == [
            *("ID", "AGE", "SOURCE", "TYPE", "EVENT", "ID", "ERROR", "ATT", "MESSAGE")
        ]
        assert ids_of(result) == [new.id, old.id]
        assert rows[1].split()[:7] == [
            *(old.id, "1h00m", "test", "thing", "old-event", "ConnectionError", "3")
        ]
        assert "…" in rows[0] and "x" * 300 not in rows[0], "long messages are cut"

    def test_json_one_object_per_line(self, cli: Cli, dl: DeadLetters) -> None:
        """``--json`` prints one JSON object per entry, one per line."""
        dead(dl, "a")
        dead(dl, "b")
        lines = cli("list", "--json").stdout.splitlines()
        rows = [orjson.loads(line) for line in lines]
        assert {row["event_id"] for row in rows} == {"a", "b"}
        assert rows[0]["attempts"] == 3 and rows[0]["error_type"] == "ConnectionError"
        assert set(rows[0]) >= {"id", "age", "source", "type", "error_message", "dead_at"}

    def test_json_never_cuts_an_id(self, cli: Cli, dl: DeadLetters) -> None:
        """``--json`` prints the longest event id and the dead-letter id whole, which the
        table cuts to fit, so that ``show`` takes what ``list --json`` printed."""
        long_id = "evt_" + "x" * 252
        letter = dead(dl, long_id, event_type="t." + "y" * 200)
        (row,) = [orjson.loads(line) for line in cli("list", "--json").stdout.splitlines()]
        assert row["event_id"] == long_id and row["id"] == letter.id
        assert long_id not in cli("list").stdout
        shown = cli("show", f"test:{row['event_id']}", "--json")
        assert orjson.loads(shown.stdout)["id"] == letter.id

    def test_source_filter(self, cli: Cli, dl: DeadLetters) -> None:
        """``--source`` keeps one source's entries."""
        dead(dl, "a")
        mine = dead(dl, "b", source="strict")
        assert ids_of(cli("list", "--source", "strict")) == [mine.id]

    def test_type_filter_exact_and_glob(self, cli: Cli, dl: DeadLetters) -> None:
        """``--type`` matches a type exactly, or a glob of types."""
        paid = dead(dl, "a", event_type="invoice.paid")
        failed = dead(dl, "b", event_type="invoice.failed")
        dead(dl, "c", event_type="charge.refunded")
        assert ids_of(cli("list", "--type", "invoice.paid")) == [paid.id]
        assert set(ids_of(cli("list", "--type", "invoice.*"))) == {paid.id, failed.id}
        orders = dead(dl, "d", event_type="orders/create")
        assert ids_of(cli("list", "--type", "orders/*")) == [orders.id]
        assert ids_of(cli("list", "--type", "?harge.refunded")) == [
            dl.get(entry_id("test", "c")).id
        ]
        assert ids_of(cli("list", "--type", "*.paid")) == [paid.id]
        assert ids_of(cli("list", "--type", "*i*v*i*e*.*p*d")) == [paid.id]
        dry_run = cli("replay", "--type", "*i*v*i*e*.*p*d", "--dry-run").stdout
        assert "dry run: 1 dead letter would be replayed" in dry_run

    def test_error_filter_matches_type_or_message_in_any_case(
        self, cli: Cli, dl: DeadLetters
    ) -> None:
        """``--error`` is a case-insensitive substring of the error type or the message."""
        by_type = dead(dl, "a", error="TimeoutError")
        by_message = dead(dl, "b", error="HTTPError", message="upstream TIMEOUT after 30s")
        dead(dl, "c", error="ValueError", message="bad amount")
        assert set(ids_of(cli("list", "--error", "timeout"))) == {by_type.id, by_message.id}
        assert ids_of(cli("list", "--error", "bad amount")) == [dl.get(entry_id("test", "c")).id]

    def test_since_and_until_take_durations_and_timestamps(self, cli: Cli, dl: DeadLetters) -> None:
        """``--since``/``--until`` accept durations ago and ISO timestamps."""
        old = dead(dl, "old", ago=3 * 3600)
        mid = dead(dl, "mid", ago=3600)
        new = dead(dl, "new", ago=60)
        assert ids_of(cli("list", "--since", "2h")) == [new.id, mid.id]
        assert ids_of(cli("list", "--until", "90m")) == [old.id]
        stamp = datetime.fromtimestamp(time.time() - 7200, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        assert ids_of(cli("list", "--since", stamp, "--until", "30m")) == [mid.id]

    def test_limit_and_next_page_cursor(self, cli: Cli, dl: DeadLetters) -> None:
        """``--limit`` cuts the page and ``--after`` continues it without overlap."""
        made = [dead(dl, f"e{i}", ago=i) for i in range(5)]
        first = cli("list", "--limit", "3")
        assert ids_of(first) == [m.id for m in made[:3]]
        token = first.stdout.rsplit("--after ", 1)[1].strip()
        second = cli("list", "--limit", "3", "--after", token)
        assert ids_of(second) == [m.id for m in made[3:]]

    def test_bad_cursor_is_a_usage_error(self, cli: Cli) -> None:
        """An ``--after`` value that is not a cursor is a usage error."""
        result = cli("list", "--after", "yesterday")
        assert result.exit_code == 2
        assert "not a dead-letter cursor" in result.stderr

    def test_bad_time_is_a_usage_error(self, cli: Cli) -> None:
        """A time that cannot be read is a usage error (exit 2) saying what to type."""
        result = cli("list", "--since", "2x")
        assert result.exit_code == 2
        assert "'2x' is not a time" in result.stderr

    def test_since_after_until_is_a_usage_error(self, cli: Cli) -> None:
        """A window that ends before it starts is refused."""
        result = cli("list", "--since", "1h", "--until", "2h")
        assert result.exit_code == 2
        assert "later than --until" in result.stderr

    def test_nothing_matches(self, cli: Cli, dl: DeadLetters) -> None:
        """A filter that matches nothing says so and succeeds."""
        dead(dl, "a")
        result = cli("list", "--source", "nobody")
        assert result.exit_code == 0
        assert "no dead letters match" in result.stdout


class TestShow:
    def test_everything_about_one_entry(self, cli: Cli, dl: DeadLetters) -> None:
        """``show`` prints the envelope, headers, the JSON body pretty and every attempt."""
        letter = dead(dl, "evt_1", body=b'{"amount":100,"currency":"eur"}')
        result = cli("show", letter.id)
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "event id  evt_1" in out and "reason    exhausted" in out
        assert "content-type: application/json" in out
        assert '{\n  "amount": 100,\n  "currency": "eur"\n}' in out
        assert "attempts (3)" in out and out.count("Traceback (most recent call last)") == 3
        assert "#3" in out and "(attempt 3)" in out

    def test_text_body_is_shown_as_is(self, cli: Cli, dl: DeadLetters) -> None:
        """A body that is not JSON is shown as text."""
        letter = dead(dl, "form", body=b"a=1&b=2")
        assert "body (text, 7 bytes)\na=1&b=2" in cli("show", letter.id).stdout

    def test_json_is_the_stored_entry(self, cli: Cli, dl: DeadLetters) -> None:
        """``show --json`` prints the entry as stored."""
        letter = dead(dl, "a")
        assert orjson.loads(cli("show", letter.id, "--json").stdout) == letter.to_dict()

    def test_unknown_id(self, cli: Cli) -> None:
        """An unknown id is an error naming it, exit 1."""
        result = cli("show", "0123456789abcdef0123")
        assert result.exit_code == 1
        assert "no dead letter with id or event id '0123456789abcdef0123'" in result.stderr
        assert "Traceback" not in result.output

    def test_by_source_and_event_id(self, cli: Cli, dl: DeadLetters) -> None:
        """``show SOURCE:EVENT_ID`` shows the entry of that event, colons in the id kept."""
        dead(dl, "evt:1", source="strict")
        letter = dead(dl, "evt:1")
        result = cli("show", "test:evt:1", "--json")
        assert result.exit_code == 0, result.output
        assert orjson.loads(result.stdout)["id"] == letter.id

    def test_by_event_id_option(self, cli: Cli, dl: DeadLetters) -> None:
        """``show --event-id ID --source S`` names the entry by what the provider sent."""
        dead(dl, "evt_7", source="strict")
        letter = dead(dl, "evt_7")
        result = cli("show", "--event-id", "evt_7", "--source", "test", "--json")
        assert result.exit_code == 0, result.output
        assert orjson.loads(result.stdout)["id"] == letter.id

    def test_bare_event_id_found_in_its_only_source(self, cli: Cli, dl: DeadLetters) -> None:
        """An event id alone finds its entry when one source has it dead."""
        letter = dead(dl, "evt_solo", source="strict")
        dead(dl, "evt_other")
        assert orjson.loads(cli("show", "evt_solo", "--json").stdout)["id"] == letter.id

    def test_bare_event_id_in_several_sources_is_named_ambiguous(
        self, cli: Cli, dl: DeadLetters
    ) -> None:
        """An event id dead in two sources is refused, listing both as SOURCE:EVENT_ID."""
        dead(dl, "evt_twice")
        dead(dl, "evt_twice", source="strict")
        result = cli("show", "evt_twice")
        assert result.exit_code == 1
        assert "strict:evt_twice, test:evt_twice" in result.stderr

    def test_unknown_event_id_of_a_source(self, cli: Cli, dl: DeadLetters) -> None:
        """An event id not dead in the named source is an error naming both, exit 1."""
        dead(dl, "evt_1", source="strict")
        result = cli("show", "--event-id", "evt_1", "--source", "test")
        assert result.exit_code == 1
        assert "no dead letter with id or event id 'evt_1' of source 'test'" in result.stderr

    def test_neither_entry_nor_event_id_is_a_usage_error(self, cli: Cli) -> None:
        """``show`` with nothing to show, or with both forms, exits 2 saying what to give."""
        assert cli("show").exit_code == 2
        both = cli("show", "abc", "--event-id", "evt_1")
        assert both.exit_code == 2 and "name one dead letter" in both.stderr


class TestReplay:
    def test_by_ids_back_to_the_queue_with_fresh_attempts(
        self, cli: Cli, dl: DeadLetters, r: redis.Redis
    ) -> None:
        """Named entries leave the DLQ and wait in their queue with no attempts."""
        a, b = dead(dl, "a"), dead(dl, "b")
        keep = dead(dl, "keep")
        result = cli("replay", a.id, b.id)
        assert result.exit_code == 0, result.output
        assert "replayed 2 dead letters to their queues" in result.stdout
        assert queued(r) == {"a": 1, "b": 1}
        assert all(env.attempts == [] for env in queued_envelopes(r))
        assert [letter.id for letter in dl.scan()] == [keep.id]

    def test_each_goes_back_to_its_own_queue(
        self, cli: Cli, dl: DeadLetters, r: redis.Redis
    ) -> None:
        """An event replays to the queue it came from."""
        dead(dl, "a", queue="generic")
        dead(dl, "b")
        assert cli("replay", "--all").exit_code == 0
        assert queued(r, "generic") == {"a": 1}
        assert queued(r, "hookline") == {"b": 1}

    def test_unknown_ids_reported_known_ones_replayed(
        self, cli: Cli, dl: DeadLetters, r: redis.Redis
    ) -> None:
        """Unknown ids are named with exit 1, and the known ones are replayed all the same."""
        a = dead(dl, "a")
        result = cli("replay", a.id, "feedfacefeedfacefeed")
        assert result.exit_code == 1
        assert "no dead letter with id feedfacefeedfacefeed" in result.stderr
        assert queued(r) == {"a": 1}

    def test_by_filter_only_the_matching(self, cli: Cli, dl: DeadLetters, r: redis.Redis) -> None:
        """A filtered replay moves the matching entries and leaves the rest."""
        dead(dl, "t1", error="TimeoutError")
        dead(dl, "t2", error="TimeoutError", source="strict")
        other = dead(dl, "c1")
        result = cli("replay", "--error", "timeout")
        assert result.exit_code == 0, result.output
        assert queued(r) == {"t1": 1, "t2": 1}
        assert [letter.id for letter in dl.scan()] == [other.id]

    def test_filters_combine_with_limit(self, cli: Cli, dl: DeadLetters, r: redis.Redis) -> None:
        """Source, type and limit together replay the oldest matching entries first."""
        for i in range(5):
            dead(dl, f"p{i}", event_type="invoice.paid", ago=100 - i)
        dead(dl, "other-type", event_type="invoice.failed", ago=200)
        result = cli("replay", "--source", "test", "--type", "invoice.paid", "--limit", "2")
        assert result.exit_code == 0, result.output
        assert queued(r) == {"p0": 1, "p1": 1}
        assert dl.count() == 4

    def test_all(self, cli: Cli, dl: DeadLetters, r: redis.Redis) -> None:
        """``--all`` replays every dead letter."""
        for i in range(7):
            dead(dl, f"e{i}")
        assert cli("replay", "--all").exit_code == 0
        assert dl.count() == 0 and sum(queued(r).values()) == 7

    def test_refuses_when_nothing_selects(self, cli: Cli, dl: DeadLetters) -> None:
        """Without ids, a filter or --all, nothing is replayed and the usage is explained."""
        dead(dl, "a")
        result = cli("replay")
        assert result.exit_code == 2
        assert "nothing selected" in result.stderr and "--all" in result.stderr
        assert dl.count() == 1

    def test_ids_and_filters_together_are_refused(self, cli: Cli, dl: DeadLetters) -> None:
        """Naming ids and giving a filter at once is a usage error."""
        a = dead(dl, "a")
        assert cli("replay", a.id, "--source", "test").exit_code == 2
        assert dl.count() == 1

    def test_dry_run_lists_and_counts_without_moving(
        self, cli: Cli, dl: DeadLetters, r: redis.Redis
    ) -> None:
        """``--dry-run`` prints what would be replayed and how many, and moves nothing."""
        a, b = dead(dl, "a"), dead(dl, "b")
        result = cli("replay", "--all", "--dry-run")
        assert result.exit_code == 0, result.output
        assert a.id in result.stdout and b.id in result.stdout
        assert "dry run: 2 dead letters would be replayed" in result.stdout
        assert dl.count() == 2 and queued(r) == {}

    def test_rate_is_honoured_over_the_run(self, cli: Cli, dl: DeadLetters) -> None:
        """40 events at --rate 20 take about two seconds, not less than 1.7."""
        for i in range(40):
            dead(dl, f"e{i}")
        started = time.monotonic()
        result = cli("replay", "--all", "--rate", "20")
        took = time.monotonic() - started
        assert result.exit_code == 0, result.output
        assert dl.count() == 0
        assert 1.7 <= took <= 8.0, took

    def test_summary_says_what_happened(self, cli: Cli, dl: DeadLetters) -> None:
        """The summary gives how many were replayed, how long it took and the rate."""
        dead(dl, "a")
        result = cli("replay", "--all")
        assert "replayed 1 dead letter to their queues in" in result.stdout
        assert "/s)" in result.stdout

    def test_nothing_matching_is_not_an_error(self, cli: Cli, dl: DeadLetters) -> None:
        """A filter matching nothing replays nothing and succeeds."""
        dead(dl, "a")
        result = cli("replay", "--source", "nobody")
        assert result.exit_code == 0
        assert "nothing to replay" in result.stdout

    def test_progress_bar_with_rate_and_eta_on_a_terminal(
        self, config: Path, dl: DeadLetters
    ) -> None:
        """On a terminal, replay draws a progress bar with position, rate and ETA."""
        for i in range(45):
            dead(dl, f"e{i}")
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [*HOOKLINE, "dlq", "replay", "--all", "--rate", "30", "--config", str(config)],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k not in CLEAN_ENV},
            stdout=subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        drawn = b""
        with pytest.raises(OSError):  # EIO once the process has closed the terminal
            while chunk := os.read(leader, 4096):
                drawn += chunk
        os.close(leader)
        assert proc.wait(timeout=20) == 0
        assert proc.stdout is not None and b"replayed 45" in proc.stdout.read()
        proc.stdout.close()
        assert b"replaying" in drawn and b"45/45" in drawn
        assert re.search(rb"\d+/45 +[0-9.]+/s +ETA 0:00:0\d", drawn), drawn


def fill(r: redis.Redis, total: int) -> None:
    """``total`` dead letters ``e0``..., oldest first, written in one pipeline."""
    dead_letters = DeadLetters(r)
    with r.pipeline(transaction=False) as pipe:
        for i in range(total):
            env = envelope(f"e{i}")
            env.attempts.append({"error_type": "ConnectionError", "message": "down"})
            dead_letters.add(
                env, reason="exhausted", worker="w", now=time.time() - total + i, pipe=pipe
            )
        pipe.execute()


def replay_process(
    *args: str, redis_url: str | None = None, **popen: Any
) -> subprocess.Popen[bytes]:
    """``hookline dlq replay ARGS`` as a real process."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    if redis_url:
        env["HOOKLINE_REDIS_URL"] = redis_url
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen([*HOOKLINE, "dlq", "replay", *args], cwd=ROOT, env=env, **popen)


def wait_until_moved(r: redis.Redis, proc: subprocess.Popen[bytes], total: int, moved: int) -> None:
    """Wait until at least ``moved`` of ``total`` dead letters have left the DLQ."""
    deadline = time.monotonic() + 20
    while DeadLetters(r).count() > total - moved:
        assert proc.poll() is None, "the replay ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def assert_each_once(r: redis.Redis, total: int) -> set[str]:
    """Every event ``e0``... is exactly once in the DLQ or in a queued job; returns the dead."""
    remaining = {letter.envelope.id for letter in DeadLetters(r).scan()}
    jobs = queued(r)
    assert not jobs or max(jobs.values()) == 1, "no event is in two jobs"
    assert remaining.isdisjoint(jobs), "no event is both dead and queued"
    assert remaining | set(jobs) == {f"e{i}" for i in range(total)}, "no event lost"
    assert DeadLetters(r).counts("source") == ({"test": len(remaining)} if remaining else {})
    return remaining


class TestReplayInterrupted:
    def test_killed_mid_way_loses_and_doubles_nothing_then_resumes(
        self, config: Path, r: redis.Redis, cli: Cli
    ) -> None:
        """Replay SIGKILLed part-way: each event once, in the DLQ or a job; a rerun finishes."""
        total = 200
        fill(r, total)
        proc = replay_process("--all", "--rate", "50", "--config", str(config))
        try:
            wait_until_moved(r, proc, total, 40)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        remaining = assert_each_once(r, total)
        assert 0 < len(remaining) < total, "killed part-way"
        result = cli("replay", "--all")
        assert result.exit_code == 0, result.output
        assert f"replayed {len(remaining)} dead letters" in result.stdout
        assert assert_each_once(r, total) == set()

    def test_ctrl_c_says_how_far_it_got_and_exits_130(self, config: Path, r: redis.Redis) -> None:
        """Ctrl-C stops a replay between steps with a message, exit 130, nothing lost."""
        total = 100
        fill(r, total)
        proc = replay_process(
            "--all", "--rate", "50", "--config", str(config), stderr=subprocess.PIPE
        )
        wait_until_moved(r, proc, total, 10)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130
        assert b"interrupted after replaying" in err and b"run the same command again" in err
        assert 0 < len(assert_each_once(r, total)) < total

    def test_redis_restart_mid_way_loses_and_doubles_nothing(
        self, private_redis: EmbeddedRedis
    ) -> None:
        """Redis restarting under a replay: each event once; a rerun finishes it."""
        total = 150
        r = redis.Redis.from_url(private_redis.url)
        fill(r, total)
        proc = replay_process(
            "--all", "--rate", "60", redis_url=private_redis.url, stderr=subprocess.PIPE
        )
        wait_until_moved(r, proc, total, 20)
        r.close()
        private_redis.restart()  # a clean restart: what was acknowledged is in the AOF
        _, err = proc.communicate(timeout=60)
        # The client may reconnect and finish, or give up with a message: both are fine.
        assert proc.returncode == 0 or b"run the same command again" in err, err
        r = redis.Redis.from_url(private_redis.url)
        assert_each_once(r, total)
        rerun = replay_process("--all", redis_url=private_redis.url)
        assert rerun.wait(timeout=30) == 0
        assert assert_each_once(r, total) == set()
        r.close()


class TestReplayAndWorkers:
    def test_event_that_meanwhile_succeeded_is_not_handled_again(
        self, cli: Cli, dl: DeadLetters, r: redis.Redis, redis_url: str
    ) -> None:
        """Replaying an event that has since succeeded leaves its effect at one."""
        settings = worker_settings(redis_url)
        letter = dead(dl, "paid")
        enqueue(r, envelope("paid"), dedupe=False)  # the provider sent it again; it worked
        drain(settings, redis_url)
        assert effects(r) == {"paid": 1}
        assert cli("replay", letter.id).exit_code == 0
        drain(settings, redis_url)
        assert effects(r) == {"paid": 1}
        assert dl.count() == 0 and r.llen(keys.rq_queue("hookline")) == 0

    def test_replayed_event_runs_with_a_fresh_set_of_attempts(
        self, cli: Cli, dl: DeadLetters, r: redis.Redis, redis_url: str
    ) -> None:
        """A worker's dead letter, replayed, is tried max_attempts times again from attempt 1."""
        settings = worker_settings(redis_url)
        enqueue(r, envelope("doomed", fail_times=99))
        drain(settings, redis_url)
        letter = dl.get(entry_id("test", "doomed"))
        assert cli("replay", letter.id).exit_code == 0
        drain(settings, redis_url)
        again = dl.get(letter.id)
        assert len(again.envelope.attempts) == 3
        assert [int(a) for a in r.lrange("test:attempts:doomed", 0, -1)] == [1, 2, 3, 1, 2, 3]

    def test_replayed_event_that_now_works_takes_effect_once(
        self, cli: Cli, dl: DeadLetters, r: redis.Redis, redis_url: str
    ) -> None:
        """Once the cause is fixed, a replayed event is handled, once."""
        settings = worker_settings(redis_url)
        letter = dead(dl, "fixed")
        assert cli("replay", "--source", "test").exit_code == 0
        drain(settings, redis_url)
        assert effects(r) == {"fixed": 1}
        assert not dl.get_many([letter.id])


class TestPurge:
    def test_declined_confirmation_removes_nothing(self, cli: Cli, dl: DeadLetters) -> None:
        """Answering no to the confirmation removes nothing."""
        dead(dl, "a")
        dead(dl, "b")
        result = cli("purge", "--all", input="n\n")
        assert result.exit_code == 1
        assert "Remove 2 dead letter(s) (all)?" in result.output
        assert dl.count() == 2

    def test_confirmed_purge_prints_how_many(self, cli: Cli, dl: DeadLetters) -> None:
        """Answering yes removes the selection and says how many were removed."""
        dead(dl, "a")
        dead(dl, "b")
        result = cli("purge", "--all", input="y\n")
        assert result.exit_code == 0, result.output
        assert "removed 2 dead letters" in result.stdout
        assert dl.count() == 0 and dl.counts("source") == {}

    def test_yes_skips_the_question_and_filters_apply(self, cli: Cli, dl: DeadLetters) -> None:
        """``--yes`` does not ask; a filter purges only what matches."""
        dead(dl, "a", error="ValueError")
        keep = dead(dl, "b")
        result = cli("purge", "--error", "valueerror", "--yes")
        assert result.exit_code == 0, result.output
        assert "Remove" not in result.output and "removed 1 dead letter" in result.stdout
        assert [letter.id for letter in dl.scan()] == [keep.id]

    def test_by_ids_with_an_unknown_one(self, cli: Cli, dl: DeadLetters) -> None:
        """Known ids are removed, unknown ones named, exit 1."""
        a, keep = dead(dl, "a"), dead(dl, "b")
        result = cli("purge", a.id, "deadbeefdeadbeefdead", "--yes")
        assert result.exit_code == 1
        assert "removed 1 dead letter" in result.stdout
        assert "no dead letter with id deadbeefdeadbeefdead" in result.stderr
        assert [letter.id for letter in dl.scan()] == [keep.id]

    def test_refuses_when_nothing_selects(self, cli: Cli, dl: DeadLetters) -> None:
        """Without ids, a filter or --all, purge is a usage error."""
        dead(dl, "a")
        assert cli("purge", "--yes").exit_code == 2
        assert dl.count() == 1


class TestExport:
    def test_stdout_json_lines_oldest_first(self, cli: Cli, dl: DeadLetters) -> None:
        """Export writes one stored entry per line, oldest first."""
        new, old = dead(dl, "new"), dead(dl, "old", ago=60)
        result = cli("export")
        assert result.exit_code == 0, result.output
        lines = [orjson.loads(line) for line in result.stdout.splitlines()]
        assert lines == [old.to_dict(), new.to_dict()]
        assert "exported 2 dead letters" in result.stderr

    def test_filters_and_output_file(self, cli: Cli, dl: DeadLetters, tmp_path: Path) -> None:
        """``--output`` writes the filtered entries to a file and nothing to stdout."""
        dead(dl, "a", source="strict")
        mine = dead(dl, "b")
        out = tmp_path / "dlq.jsonl"
        result = cli("export", "--source", "test", "--output", str(out))
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
        assert [orjson.loads(line)["id"] for line in out.read_bytes().splitlines()] == [mine.id]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dlq.jsonl", "hookline.toml"]

    def test_unknown_ids_named_known_exported(self, cli: Cli, dl: DeadLetters) -> None:
        """Exporting named ids writes the known ones and names the unknown, exit 1."""
        a = dead(dl, "a")
        result = cli("export", a.id, "0000000000000000beef")
        assert result.exit_code == 1
        assert [orjson.loads(line)["id"] for line in result.stdout.splitlines()] == [a.id]
        assert "0000000000000000beef" in result.stderr

    def test_export_purge_then_replay_from_file(
        self, cli: Cli, dl: DeadLetters, r: redis.Redis, tmp_path: Path
    ) -> None:
        """Exported, purged, then ``replay --from``: every event is back in its queue, once."""
        dead(dl, "a")
        dead(dl, "b", queue="generic")
        still = dead(dl, "c")
        out = tmp_path / "dlq.jsonl"
        assert cli("export", "--output", str(out)).exit_code == 0
        assert cli("purge", "--all", "--yes", "--error", "connection").exit_code == 0
        dead(dl, "c")  # died again after the purge: replayed from the DLQ, not enqueued twice
        result = cli("replay", "--from", str(out))
        assert result.exit_code == 0, result.output
        assert "replayed 1 from the dead-letter queue and enqueued 2 afresh" in result.stdout
        assert queued(r, "hookline") == {"a": 1, "c": 1}
        assert queued(r, "generic") == {"b": 1}
        assert all(env.attempts == [] for env in queued_envelopes(r))
        assert not dl.get_many([still.id])

    def test_replay_from_dry_run(
        self, cli: Cli, dl: DeadLetters, r: redis.Redis, tmp_path: Path
    ) -> None:
        """``replay --from --dry-run`` says what would be replayed or enqueued, doing neither."""
        dead(dl, "a")
        dead(dl, "b")
        out = tmp_path / "dlq.jsonl"
        assert cli("export", "--output", str(out)).exit_code == 0
        dl.delete([entry_id("test", "a")])
        result = cli("replay", "--from", str(out), "--dry-run")
        assert "1 would be replayed from the dead-letter queue, 1 enqueued afresh" in result.stdout
        assert dl.count() == 1 and queued(r) == {}

    def test_replay_from_a_file_that_is_not_an_export(self, cli: Cli, tmp_path: Path) -> None:
        """A file that is not an export is refused, naming the line, before anything moves."""
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"id": "x"}\n')
        result = cli("replay", "--from", str(bad))
        assert result.exit_code == 1
        assert "line 1: not an exported dead letter" in result.stderr


class TestAtomicFile:
    def test_interrupted_write_leaves_nothing_under_the_name(self, tmp_path: Path) -> None:
        """An export interrupted mid-way leaves neither a half file nor a temporary one."""
        target = tmp_path / "out.jsonl"
        target.write_bytes(b"previous\n")
        with pytest.raises(KeyboardInterrupt), atomic_file(target) as out:
            out.write(b"half")
            raise KeyboardInterrupt
        assert target.read_bytes() == b"previous\n"
        assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


class TestConnection:
    def test_config_names_redis(self, cli: Cli, dl: DeadLetters) -> None:
        """With only ``--config``, the command reads the Redis its redis.url names."""
        dead(dl, "a")
        assert "1 dead letter;" in cli("stats").stdout

    def test_environment_names_redis_without_a_config(
        self, dl: DeadLetters, redis_url: str
    ) -> None:
        """Without a configuration file, HOOKLINE_REDIS_URL is used."""
        dead(dl, "a")
        env = {**CLEAN_ENV, "HOOKLINE_REDIS_URL": redis_url}
        result = CliRunner().invoke(main, ["dlq", "stats"], env=env)
        assert result.exit_code == 0, result.output
        assert "1 dead letter;" in result.stdout

    def test_nothing_names_redis(self) -> None:
        """With neither, the command says how to name Redis."""
        result = CliRunner().invoke(main, ["dlq", "stats"], env=CLEAN_ENV)
        assert result.exit_code == 1
        assert "HOOKLINE_REDIS_URL" in result.stderr

    @pytest.mark.parametrize(
        "args",
        [
            ["stats"],
            ["list"],
            ["show", "0123456789abcdef0123"],
            ["replay", "--all"],
            ["purge", "--all", "--yes"],
            ["export"],
        ],
    )
    def test_redis_down(self, args: list[str]) -> None:
        """Redis unreachable: every command says so and where it looked, exit 1."""
        url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
        result = CliRunner().invoke(
            main, ["dlq", *args], env={**CLEAN_ENV, "HOOKLINE_REDIS_URL": url}
        )
        assert result.exit_code == 1
        assert "cannot reach Redis at redis://***@127.0.0.1" in result.stderr
        assert "s3cret" not in result.output

    def test_unreachable_sentinel_group_is_named_masked(self) -> None:
        """A Sentinel URL with several hosts, none answering: the same message, exit 1."""
        hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
        url = f"redis+sentinel://:s3cret@{hosts}/mymaster"
        result = CliRunner().invoke(
            main, ["dlq", "stats"], env={**CLEAN_ENV, "HOOKLINE_REDIS_URL": url}
        )
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(
            f"Error: cannot reach Redis at redis+sentinel://***@{hosts}/mymaster: "
            "No master found for 'mymaster' (check the Sentinel addresses and service name)\n"
        ), result.stderr
        assert "s3cret" not in result.output


class TestSearch:
    def test_indexed_filter_page_reads_only_what_it_returns(
        self, dl: DeadLetters, r: redis.Redis
    ) -> None:
        """A page filtered by source or exact type passes over only the entries it returns."""
        with r.pipeline(transaction=False) as pipe:
            for i in range(3000):
                source, event_type = ("test", "thing") if i % 100 else ("strict", "rare")
                env = envelope(f"e{i}", source=source, event_type=event_type)
                dl.add(env, reason="exhausted", worker="w", now=1000.0 + i, pipe=pipe)
            pipe.execute()
        search = Search(dl)
        for flt in (Filter(source="strict"), Filter(type="rare"), Filter("strict", "rare")):
            page = search.page(flt, limit=10)
            assert len(page.items) == 10 and page.scanned == 10
            assert {letter.envelope.source for letter in page.items} == {"strict"}
        assert search.count(Filter(source="strict", type="rare")) == (30, True)

    def test_type_glob_selects_the_same_on_the_server_and_in_counts(self, dl: DeadLetters) -> None:
        """``*`` is any run and ``?`` any one character (accented ones too), anchored at both
        ends: the server-side walk, ``glob_match`` and ``count`` all agree with that."""
        rng = random.Random(7)
        types = sorted({"".join(rng.choices("ab.é", k=rng.randint(1, 7))) for _ in range(300)})
        letters = {
            dl.add(envelope(f"e{i}", event_type=t), reason="exhausted", worker="w").id: t
            for i, t in enumerate(types)
        }
        search = Search(dl)
        for _ in range(150):
            glob = "".join(rng.choices("ab.é*?", k=rng.randint(1, 6)))
            spec = re.compile("".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in glob))
            expected = {i for i, t in letters.items() if spec.fullmatch(t)}
            flt = Filter(type=glob)
            assert set(search.page_ids(flt, limit=1000).items) == expected, glob
            assert {i for i, t in letters.items() if glob_match(glob, t)} == expected, glob
            assert search.count(flt) == (len(expected), True), glob
            assert search.count(replace(flt, since=0.0))[0] >= len(expected), glob
        # An exact type checked on the walk of a smaller source index.
        few = dl.add(envelope("x", source="few", event_type=types[0]), reason="r", worker="w")
        exact = search.page_ids(Filter("few", types[0]))
        assert (exact.items, exact.scanned) == ([few.id], 1)
        assert search.page_ids(Filter("few", types[1])).items == []

    def test_pathological_type_glob_takes_bounded_time(
        self, dl: DeadLetters, r: redis.Redis
    ) -> None:
        """A glob on which a backtracking matcher takes time growing as a power of the type's
        length per ``*`` is matched against 2,000 entries' types, on the server and in
        counts, correctly and in a bounded time."""
        with r.pipeline(transaction=False) as pipe:
            for i in range(2000):
                env = envelope(f"e{i}", event_type=f"{'a' * 20}.{i:019d}")
                dl.add(env, reason="exhausted", worker="w", now=1000.0 + i, pipe=pipe)
            pipe.execute()
        search = Search(dl)
        started = time.monotonic()
        none = search.page_ids(Filter(type="*a*a*a*a*a*a*a*b"), limit=10)
        sevens = search.page_ids(Filter(type="*a*a*a*a*a*a*a*7"), limit=1000)
        counted = search.count(Filter(type="*a*a*a*a*a*a*a*b"))
        elapsed = time.monotonic() - started
        assert (none.items, none.scanned, none.next) == ([], 2000, None)
        assert len(sevens.items) == 200 and sevens.next is None
        assert counted == (0, True)
        assert elapsed < 3.0, f"{elapsed:.1f} s"

    def test_walk_is_not_shifted_by_removals_or_ties(self, dl: DeadLetters) -> None:
        """Paging by cursor visits every entry once, even with equal times and removals."""
        for i in range(50):
            dl.add(envelope(f"e{i}"), reason="exhausted", worker="w", now=1000.0 + i // 10)
        search, seen, cursor = Search(dl), [], None
        while True:
            page = search.page_ids(limit=7, after=cursor, newest_first=False)
            seen += page.items
            dl.replay(page.items[:3])
            if page.next is None:
                break
            cursor = page.next
        assert sorted(seen) == sorted({entry_id("test", f"e{i}") for i in range(50)})
        assert len(seen) == 50

    def test_type_index_follows_add_replay_and_delete(
        self, dl: DeadLetters, r: redis.Redis
    ) -> None:
        """The per-type index holds exactly the type's current entries."""
        a = dl.add(envelope("a", event_type="x"), reason="exhausted", worker="w")
        b = dl.add(envelope("b", event_type="x"), reason="exhausted", worker="w")
        dl.add(envelope("c", event_type="y"), reason="exhausted", worker="w")
        dl.replay([a.id])
        dl.delete([b.id])
        assert r.zcard(keys.dlq_type_index("x")) == 0
        assert r.zcard(keys.dlq_type_index("y")) == 1


class TestPacer:
    def test_run_takes_at_least_items_over_rate(self) -> None:
        """Steps paced at 10/s: 20 items take two seconds of the clock, the first goes at once."""
        now = [0.0]
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds

        pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
        for done in range(5, 25, 5):
            pacer.wait(done)
        assert now[0] == pytest.approx(2.0)

    def test_no_rate_never_sleeps(self) -> None:
        """Without a rate the pacer never waits."""
        pacer = Pacer(None, sleep=lambda s: pytest.fail("slept"))
        pacer.wait(10_000)


class TestAge:
    def test_two_largest_units_without_spaces(self) -> None:
        """An age reads in its two largest units, one table column wide; skew reads ``0s``."""
        cases = {-3: "0s", 45: "45s", 60: "1m00s", 725: "12m05s", 3600: "1h00m"}
        cases |= {11_100: "3h05m", 86_399: "23h59m", 183_600: "2d03h"}
        assert {seconds: age(seconds) for seconds in cases} == cases


class TestScriptCacheEmptied:
    def test_writes_after_the_flush_are_indexed_and_counted_once(
        self, dl: DeadLetters, r: redis.Redis
    ) -> None:
        """Dead letters written after Redis lost its scripts, one by one or in a pipeline
        the caller executes, are each stored, indexed and counted once."""
        r.script_flush()
        dl.add(envelope("single"), reason="exhausted", worker="w")
        r.script_flush()
        with r.pipeline(transaction=False) as pipe:
            for i in range(3):
                dl.add(envelope(f"bulk{i}"), reason="exhausted", worker="w", pipe=pipe)
            pipe.execute()
        assert dl.count() == 4
        assert dl.counts("source") == {"test": 4}
        assert {letter.envelope.id for letter in dl.scan()} == {"single", "bulk0", "bulk1", "bulk2"}

    def test_replay_and_delete_after_the_flush_act_once(
        self, dl: DeadLetters, r: redis.Redis
    ) -> None:
        """Replay and delete after Redis lost its scripts move or remove each entry once."""
        ids = [dl.add(envelope(f"e{i}"), reason="exhausted", worker="w").id for i in range(3)]
        r.script_flush()
        assert dl.replay(ids[:2]) == ids[:2]
        r.script_flush()
        assert dl.delete(ids[1:]) == ids[2:]
        assert dl.count() == 0 and dl.counts("source") == {}
        assert queued(r) == Counter({"e0": 1, "e1": 1})
