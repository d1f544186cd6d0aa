"""The workers' promises: once in effect, retried with backoff, dead-lettered with evidence."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import orjson
import pytest
import redis

from hookline.dlq.store import DeadLetters, entry_id
from hookline.redis import keys
from hookline.redis.connection import as_str
from hookline.redis.embedded import EmbeddedRedis
from hookline.redis.jobs import parse_job_data
from hookline.workers.handlers import Event, load_router
from hookline.workers.runner import CRASH_LIMIT, Processor
from hookline.workers.worker import HEARTBEAT_TTL, Worker
from tests.worker_support import (
    children_of,
    drain,
    effects,
    enqueue,
    envelope,
    pending_work,
    processes,
    wait_for,
    worker_settings,
    write_config,
)


def attempts_of(r: redis.Redis, event_id: str) -> list[int]:
    return [int(a) for a in r.lrange(f"test:attempts:{event_id}", 0, -1)]


class TestSuccess:
    def test_event_takes_effect_once_and_leaves_no_job(
        self, redis_url: str, r: redis.Redis
    ) -> None:
        """A handled event has one effect, a done marker, and its job is gone."""
        settings = worker_settings(redis_url)
        enqueue(r, envelope("e1"), envelope("e2"))
        drain(settings, redis_url)
        assert effects(r) == {"e1": 1, "e2": 1}
        assert r.exists(keys.done("test", "e1"))
        assert r.keys("rq:job:*") == []
        assert r.smembers(keys.workers()) == set()

    def test_done_marker_outlives_the_dedupe_window(self, redis_url: str, r: redis.Redis) -> None:
        """The done marker lives at least as long as the receiver's dedupe window (3 days)."""
        settings = worker_settings(redis_url)
        enqueue(r, envelope("ttl"))
        drain(settings, redis_url)
        assert r.pttl(keys.done("test", "ttl")) > 3 * 86400_000 - 60_000

    def test_same_event_enqueued_twice_has_one_effect(self, redis_url: str, r: redis.Redis) -> None:
        """Two jobs carrying the same event: the handler takes effect once."""
        settings = worker_settings(redis_url)
        enqueue(r, envelope("twice"), dedupe=False)
        enqueue(r, envelope("twice"), dedupe=False)
        assert r.llen(keys.rq_queue("hookline")) == 2
        drain(settings, redis_url)
        assert effects(r) == {"twice": 1}
        assert attempts_of(r, "twice") == [1]

    def test_unhandled_event_is_ignored_and_counted(self, redis_url: str, r: redis.Redis) -> None:
        """An event with no handler is, by default, ignored and counted per source."""
        settings = worker_settings(redis_url)
        enqueue(r, envelope("orphan", source="nobody"))
        drain(settings, redis_url)
        assert r.hget(keys.ignored(), "nobody") == b"1"
        assert DeadLetters(r).count() == 0

    def test_unhandled_event_can_be_dead_lettered(self, redis_url: str, r: redis.Redis) -> None:
        """A source configured with unhandled = 'dead-letter' dead-letters such events."""
        settings = worker_settings(redis_url)
        enqueue(r, envelope("orphan", source="strict"))
        drain(settings, redis_url)
        letter = DeadLetters(r).get(entry_id("strict", "orphan"))
        assert letter.reason == "unhandled"


class TestRetries:
    def test_fails_twice_then_succeeds(self, redis_url: str, r: redis.Redis) -> None:
        """A handler failing twice succeeds on attempt 3: one effect, three attempts seen."""
        settings = worker_settings(redis_url)
        enqueue(r, envelope("flaky", fail_times=2))
        drain(settings, redis_url)
        assert effects(r) == {"flaky": 1}
        assert attempts_of(r, "flaky") == [1, 2, 3]
        assert DeadLetters(r).count() == 0

    def test_always_failing_is_dead_lettered_with_every_attempt(
        self, redis_url: str, r: redis.Redis
    ) -> None:
        """After max attempts the event is a dead letter holding each attempt's error."""
        settings = worker_settings(redis_url)
        enqueue(r, envelope("doomed", fail_times=99))
        drain(settings, redis_url)
        assert effects(r) == {}
        letter = DeadLetters(r).get(entry_id("test", "doomed"))
        assert letter.reason == "exhausted"
        assert letter.error_type == "ConnectionError"
        assert [a["error_type"] for a in letter.envelope.attempts] == ["ConnectionError"] * 3
        assert [a["message"] for a in letter.envelope.attempts][-1].endswith("(attempt 3)")
        assert all("Traceback" in a["traceback"] for a in letter.envelope.attempts)
        assert letter.worker and all(a["worker"] for a in letter.envelope.attempts)
        assert letter.envelope.body == orjson.dumps({"fail_times": 99})
        assert r.ttl(keys.dlq_entry(letter.id)) == -1, "dead letters never expire by default"

    def test_permanent_error_dead_letters_at_once(self, redis_url: str, r: redis.Redis) -> None:
        """A PermanentError skips the remaining attempts."""
        settings = worker_settings(redis_url)
        enqueue(r, envelope("bad", permanent=True))
        drain(settings, redis_url)
        letter = DeadLetters(r).get(entry_id("test", "bad"))
        assert (letter.reason, letter.error_type) == ("permanent", "PermanentError")
        assert attempts_of(r, "bad") == [1]

    def test_timeout_ends_a_hung_attempt(self, redis_url: str, r: redis.Redis) -> None:
        """A handler running past handler_timeout is stopped and counted as a failure."""
        settings = worker_settings(
            redis_url, handler_timeout=0.3, retry={"max_attempts": 2, "base_delay": 0.01}
        )
        enqueue(r, envelope("hang", sleep=30))
        started = time.monotonic()
        drain(settings, redis_url)
        assert time.monotonic() - started < 10
        letter = DeadLetters(r).get(entry_id("test", "hang"))
        assert [a["error_type"] for a in letter.envelope.attempts] == ["HandlerTimeout"] * 2

    def test_backoff_delays_the_retry(self, redis_url: str, r: redis.Redis) -> None:
        """A failed attempt is scheduled in the retry set, due within the backoff ceiling."""
        settings = worker_settings(redis_url, retry={"base_delay": 3600, "max_delay": 3600})
        enqueue(r, envelope("later", fail_times=1))
        Worker(settings, redis_url, burst=True).run()
        scheduled = cast(
            list[tuple[bytes, float]], r.zrange(keys.retries(), 0, -1, withscores=True)
        )
        [(member, due)] = scheduled
        assert member == keys.retry_member("test", "later").encode()
        assert time.time() - 1 <= due <= time.time() + 3600
        stored = r.hget(keys.retry_envelopes(), member)
        assert stored is not None
        assert orjson.loads(stored)["attempts"][0]["error_type"] == "ConnectionError"
        assert effects(r) == {}

    def test_per_source_retry_policy_wins(self, redis_url: str, r: redis.Redis) -> None:
        """A source's own retry table overrides the global one."""
        from hookline.config.settings import parse_settings
        from tests.worker_support import worker_config

        cfg = worker_config(redis_url)
        cfg["sources"]["test"]["retry"] = {"max_attempts": 1}
        settings = parse_settings(cfg, {})
        os.environ["HOOKLINE_REDIS_URL"] = redis_url
        enqueue(r, envelope("once", fail_times=5))
        drain(settings, redis_url)
        assert attempts_of(r, "once") == [1]


@pytest.fixture
def own_redis(private_redis: EmbeddedRedis) -> Iterator[tuple[str, redis.Redis]]:
    """A private server, so that no process of another test can touch this one's events."""
    client = redis.Redis.from_url(private_redis.url)
    yield private_redis.url, client
    client.close()


class TestWorkerProcesses:
    def test_sigkill_mid_handler_is_completed_once_by_another(
        self, own_redis: tuple[str, redis.Redis], tmp_path: Path
    ) -> None:
        """A worker SIGKILLed mid-event: another worker completes the event once, promptly."""
        redis_url, r = own_redis
        config = write_config(tmp_path / "w.toml", redis_url)
        worker_settings(redis_url)
        with contextlib.contextmanager(processes)(config) as first:
            enqueue(r, envelope("victim", sleep=2, started=True))
            wait_for(lambda: r.exists("test:started:victim"), what="the handler to start")
            [child] = children_of(first.proc.pid)
            os.kill(child, signal.SIGKILL)
            first.signal(
                signal.SIGSTOP
            )  # the supervisor must not restart it: another host takes over
            killed_at = time.monotonic()
            with contextlib.contextmanager(processes)(config):
                wait_for(
                    lambda: effects(r).get("victim") == 1,
                    timeout=HEARTBEAT_TTL + 15,
                    what="another worker to complete the event",
                )
                recovered = time.monotonic() - killed_at
            first.signal(signal.SIGCONT)
        assert effects(r) == {"victim": 1}
        assert recovered < HEARTBEAT_TTL + 10

    def test_sigterm_finishes_the_event_in_progress(
        self, own_redis: tuple[str, redis.Redis], tmp_path: Path
    ) -> None:
        """SIGTERM is warm: the running event finishes, the rest stays queued, exit code 0."""
        redis_url, r = own_redis
        config = write_config(tmp_path / "w.toml", redis_url)
        worker_settings(redis_url)
        with contextlib.contextmanager(processes)(config) as proc:
            enqueue(r, envelope("inflight", sleep=1, started=True), envelope("next"))
            wait_for(lambda: r.exists("test:started:inflight"), what="the handler to start")
            proc.signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        assert effects(r) == {"inflight": 1}
        assert pending_work(r) == 1, "the unstarted event is back in its queue"
        drain(worker_settings(redis_url), redis_url)
        assert effects(r) == {"inflight": 1, "next": 1}

    def test_supervisor_restarts_a_crashed_worker(
        self, own_redis: tuple[str, redis.Redis], tmp_path: Path
    ) -> None:
        """A worker process that dies is replaced and the queue keeps draining."""
        redis_url, r = own_redis
        config = write_config(tmp_path / "w.toml", redis_url)
        worker_settings(redis_url)
        with contextlib.contextmanager(processes)(config) as proc:
            wait_for(lambda: children_of(proc.proc.pid), what="a worker process")
            [child] = children_of(proc.proc.pid)
            os.kill(child, signal.SIGKILL)
            wait_for(
                lambda: [c for c in children_of(proc.proc.pid) if c != child],
                what="a replacement worker",
            )
            enqueue(r, envelope("after-crash"))
            wait_for(lambda: effects(r).get("after-crash") == 1, what="the replacement to work")

    def test_thousand_events_two_processes_exactly_once(
        self, own_redis: tuple[str, redis.Redis], tmp_path: Path
    ) -> None:
        """1,000 events over two worker processes, 5 % failing once: each takes effect once."""
        redis_url, r = own_redis
        config = write_config(tmp_path / "w.toml", redis_url)
        worker_settings(redis_url)
        rng = random.Random(7)
        events = [
            envelope(f"ev{i}", fail_times=1 if rng.random() < 0.05 else 0) for i in range(1000)
        ]
        flaky = sum(1 for e in events if b'fail_times":1' in e.body)
        assert flaky > 20
        with contextlib.contextmanager(processes)(config, "--processes", "2"):
            for start in range(0, 1000, 25):
                enqueue(r, *events[start : start + 25])
            wait_for(
                lambda: len(effects(r)) == 1000 and pending_work(r) == 0,
                timeout=90,
                what="all 1,000 events",
            )
        counts = effects(r)
        assert set(counts) == {f"ev{i}" for i in range(1000)}
        assert set(counts.values()) == {1}
        assert DeadLetters(r).count() == 0
        assert sum(len(attempts_of(r, e.id)) for e in events) == 1000 + flaky


@pytest.mark.parametrize("processes_count", [1])
def test_burst_exits_when_empty(
    redis_url: str, r: redis.Redis, tmp_path: Path, processes_count: int
) -> None:
    """`hookline work --burst` drains the queue and exits 0."""
    config = write_config(tmp_path / "w.toml", redis_url)
    worker_settings(redis_url)
    enqueue(r, envelope("b1"), envelope("b2"))
    with contextlib.contextmanager(processes)(config, "--burst", "-n", str(processes_count)) as p:
        assert p.wait(timeout=30) == 0
    assert effects(r) == {"b1": 1, "b2": 1}


class TestStockRQ:
    def test_stock_rq_worker_runs_hookline_jobs_with_the_same_semantics(
        self, redis_url: str, r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A stock RQ SimpleWorker runs hookline jobs: effects once, failures retried."""
        from rq import Queue, SimpleWorker
        from rq.serializers import JSONSerializer

        config = write_config(tmp_path / "w.toml", redis_url)
        worker_settings(redis_url)
        monkeypatch.setenv("HOOKLINE_CONFIG", str(config))
        enqueue(r, envelope("rq1"), envelope("rq2", fail_times=1))
        enqueue(r, envelope("rq1"), dedupe=False)
        queue = Queue("hookline", connection=r, serializer=JSONSerializer)
        SimpleWorker([queue], connection=r, serializer=JSONSerializer).work(burst=True)
        assert effects(r) == {"rq1": 1}
        assert r.zcard(keys.retries()) == 1, "the failed event waits for its retry"


class TestHardCases:
    def test_event_held_by_a_live_worker_is_deferred_not_dropped(
        self, redis_url: str, r: redis.Redis
    ) -> None:
        """A copy of an event another live worker holds is looked at again later, not lost."""
        settings = worker_settings(redis_url)
        r.set(keys.worker("ghost"), "1", px=60_000)
        r.set(keys.lease("test", "held"), "ghost", px=60_000)
        enqueue(r, envelope("held"))
        Worker(settings, redis_url, burst=True).run()
        assert effects(r) == {}
        assert r.zscore(keys.retries(), keys.retry_member("test", "held")) is not None
        assert r.keys("rq:job:*") == []
        r.delete(keys.worker("ghost"))  # the holder died without resolving it
        r.zadd(keys.retries(), {keys.retry_member("test", "held"): 0})  # due now
        drain(settings, redis_url)
        assert effects(r) == {"held": 1}

    def test_warm_stop_mid_job_gives_back_only_what_the_job_owes(
        self, own_redis: tuple[str, redis.Redis], tmp_path: Path
    ) -> None:
        """Stopped mid-job, events already failed are not run again; unstarted ones are kept."""
        redis_url, r = own_redis
        slow_retry = {"base_delay": 3600, "max_delay": 3600}
        config = write_config(tmp_path / "w.toml", redis_url, retry=slow_retry)
        worker_settings(redis_url)
        with contextlib.contextmanager(processes)(config) as proc:
            enqueue(
                r,
                envelope("perm", permanent=True),
                envelope("flaky", fail_times=1),
                envelope("slow", sleep=1, started=True),
                envelope("later"),
            )
            wait_for(lambda: r.exists("test:started:slow"), what="the slow handler to start")
            proc.signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        assert effects(r) == {"slow": 1}
        assert r.zcard(keys.retries()) == 1, "one retry chain for the failed event"
        assert DeadLetters(r).count() == 1
        Worker(worker_settings(redis_url, retry=slow_retry), redis_url, burst=True).run()
        assert effects(r) == {"slow": 1, "later": 1}
        assert attempts_of(r, "perm") == [1], "the dead-lettered event did not run again"
        assert attempts_of(r, "flaky") == [1], "its retry waits; it did not run again at once"
        assert r.zcard(keys.retries()) == 1

    def test_event_that_kills_its_worker_is_dead_lettered_and_the_queue_moves_on(
        self, own_redis: tuple[str, redis.Redis], tmp_path: Path
    ) -> None:
        """An event whose handler kills the process is dead-lettered as crashed; others run."""
        redis_url, r = own_redis
        config = write_config(tmp_path / "w.toml", redis_url)
        worker_settings(redis_url)
        with contextlib.contextmanager(processes)(config):
            enqueue(r, envelope("poison", die=True), envelope("after"))
            wait_for(
                lambda: effects(r).get("after") == 1,
                timeout=HEARTBEAT_TTL * (CRASH_LIMIT + 2) + 20,
                what="the event after the poison one",
            )
        letter = DeadLetters(r).get(entry_id("test", "poison"))
        assert letter.reason == "crashed"
        assert len(attempts_of(r, "poison")) == CRASH_LIMIT


class FlushScriptsWhenHandled:
    """An observer that empties Redis's script cache after each handled event, as a
    restart or failover between two events would, and may then ask a worker to stop."""

    def __init__(self, client: redis.Redis, stop: Worker | None = None) -> None:
        self.client = client
        self.stop = stop

    def handled(self, event: Event, seconds: float) -> None:
        """Empty the script cache; request a warm stop if asked to."""
        self.client.script_flush()
        if self.stop is not None:
            self.stop.request_stop()

    def retried(self, event: Event, error: BaseException) -> None:
        """Do nothing."""

    def dead(self, event: Event, reason: str) -> None:
        """Do nothing."""

    def ignored(self, event: Event) -> None:
        """Do nothing."""


def flushing_processor(redis_url: str, r: redis.Redis) -> Processor:
    """A processor whose observer empties Redis's script cache after each handled event."""
    settings = worker_settings(redis_url)
    return Processor(
        r,
        settings,
        load_router(settings.workers.handlers),
        "w-flush",
        observer=FlushScriptsWhenHandled(r),
        use_alarm=False,
    )


class TestScriptCacheEmptied:
    def test_ignored_event_is_counted_once(self, redis_url: str, r: redis.Redis) -> None:
        """An event ignored right after Redis lost its scripts is marked done and counted
        once: the outcome write run again after NOSCRIPT does not count it twice."""
        processor = flushing_processor(redis_url, r)
        result = processor.run_job([envelope("first"), envelope("orphan", source="nobody")])
        assert (result.handled, result.ignored) == (1, 1)
        assert r.hget(keys.ignored(), "nobody") == b"1"
        assert r.exists(keys.done("nobody", "orphan"))
        assert not r.exists(keys.lease("nobody", "orphan"))

    def test_event_dead_lettered_after_the_flush_is_dead_lettered_once(
        self, redis_url: str, r: redis.Redis
    ) -> None:
        """An event dead-lettered right after Redis lost its scripts is one dead letter,
        counted once, its lease released."""
        processor = flushing_processor(redis_url, r)
        result = processor.run_job([envelope("first"), envelope("doomed", permanent=True)])
        assert (result.handled, result.dead) == (1, 1)
        dead_letters = DeadLetters(r)
        assert dead_letters.get(entry_id("test", "doomed")).reason == "permanent"
        assert dead_letters.counts("source") == {"test": 1}
        assert not r.exists(keys.lease("test", "doomed"))

    def test_burst_worker_reaps_promotes_and_claims(self, redis_url: str, r: redis.Redis) -> None:
        """With the script cache emptied, a worker still requeues a dead worker's job,
        promotes a due retry and claims both: each event takes effect once."""
        settings = worker_settings(redis_url)
        enqueue(r, envelope("orphaned"))
        r.lmove(keys.rq_queue("hookline"), keys.worker_jobs("ghost"), "LEFT", "RIGHT")
        r.sadd(keys.workers(), "ghost")
        member = keys.retry_member("test", "due")
        r.hset(keys.retry_envelopes(), member, envelope("due").to_json())
        r.zadd(keys.retries(), {member: 0})
        r.script_flush()
        drain(settings, redis_url)
        assert effects(r) == {"orphaned": 1, "due": 1}
        assert r.smembers(keys.workers()) == set()
        assert r.keys("rq:job:*") == []

    def test_warm_stop_replaces_the_job_with_what_it_owes(
        self, redis_url: str, r: redis.Redis
    ) -> None:
        """Stopped mid-job just after Redis lost its scripts, a worker puts back a job
        carrying only the unstarted event, in place of the original."""
        settings = worker_settings(redis_url)
        worker = Worker(settings, redis_url, burst=True)
        worker.processor.observer = FlushScriptsWhenHandled(r, stop=worker)
        enqueue(r, envelope("ran"), envelope("owed"))
        [original] = [as_str(j) for j in r.lrange(keys.rq_queue("hookline"), 0, -1)]
        worker.run()
        assert effects(r) == {"ran": 1}
        [job] = [as_str(j) for j in r.lrange(keys.rq_queue("hookline"), 0, -1)]
        assert job != original and not r.exists(keys.rq_job(original))
        data = r.hget(keys.rq_job(job), "data")
        assert isinstance(data, bytes)
        assert [env.id for env in parse_job_data(data)] == ["owed"]

    def test_leftover_job_is_given_back(self, redis_url: str, r: redis.Redis) -> None:
        """A job still in a stopping worker's list after Redis lost its scripts goes back
        to the front of its queue."""
        settings = worker_settings(redis_url)
        worker = Worker(settings, redis_url, burst=True, name="w-leftover")
        enqueue(r, envelope("left"))
        [job] = [as_str(j) for j in r.lrange(keys.rq_queue("hookline"), 0, -1)]
        r.lmove(keys.rq_queue("hookline"), keys.worker_jobs("w-leftover"), "LEFT", "RIGHT")
        r.script_flush()
        worker.run()
        assert [as_str(j) for j in r.lrange(keys.rq_queue("hookline"), 0, -1)] == [job]
        assert not r.exists(keys.worker_jobs("w-leftover"))
