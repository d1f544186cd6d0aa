"""Run the events of one job, each exactly once in effect.

For every event: skip it if its done marker exists; take its lease (one worker at a
time, stolen only from a worker whose heartbeat has stopped); run its handler under
the time limit; then, in one atomic step each, either write the done marker, schedule
the next attempt, or dead-letter it. Idempotency, retry and dead-lettering are
decided here, around the handler call; the worker loop only claims and acknowledges.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis
import structlog
from redis.client import Pipeline

from config.settings import DEFAULT_DEDUPE_WINDOW, Settings
from hookline import keys
from hookline.envelope import Envelope
from hookline.errors import PermanentError
from hookline.lua import Script, run_pipeline
from workers.deadletter import DeadLetters
from workers.handlers import Event, Router
from workers.retry import TimeLimit, backoff

log = structlog.get_logger("hookline.worker")

#: Longest traceback kept per attempt, in characters (the end is kept).
MAX_TRACEBACK = 4000
#: Longest error message kept per attempt.
MAX_MESSAGE = 1000
#: Extra lease time beyond the handler time limit.
LEASE_MARGIN = 30.0
#: How long a worker keeps retrying the write that records an outcome (within the lease).
RESOLVE_PATIENCE = LEASE_MARGIN / 2

# KEYS: lease, done. ARGV: me, ttl ms, heartbeat key prefix.
# Returns 0: lease taken; 1: already done; 2: a live worker holds it.
_LEASE = Script("""
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return 2
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 0
""")

_RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
""")
_SCRIPTS = (_LEASE, _RELEASE)


class Observer(Protocol):
    """Hooks called as events are resolved (metrics implement them)."""

    def handled(self, event: Event, seconds: float) -> None:
        """The handler succeeded in ``seconds``."""

    def retried(self, event: Event, error: BaseException) -> None:
        """The attempt failed and another is scheduled."""

    def dead(self, event: Event, reason: str) -> None:
        """The event was dead-lettered."""

    def ignored(self, event: Event) -> None:
        """No handler exists for the event and its source ignores such events."""


class NullObserver:
    """An observer that does nothing."""

    def handled(self, event: Event, seconds: float) -> None:
        """Do nothing."""

    def retried(self, event: Event, error: BaseException) -> None:
        """Do nothing."""

    def dead(self, event: Event, reason: str) -> None:
        """Do nothing."""

    def ignored(self, event: Event) -> None:
        """Do nothing."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """What became of a job's events."""

    handled: int = 0
    skipped: int = 0
    retried: int = 0
    dead: int = 0
    ignored: int = 0
    interrupted: bool = False

    @classmethod
    def of(cls, counts: Counter[str], *, interrupted: bool = False) -> JobResult:
        """Build from counts keyed by outcome name."""
        return cls(
            handled=counts["handled"],
            skipped=counts["skipped"],
            retried=counts["retried"],
            dead=counts["dead"],
            ignored=counts["ignored"],
            interrupted=interrupted,
        )


class Processor:
    """Resolves events: done, retried or dead-lettered, each in one atomic step."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        router: Router,
        worker: str,
        *,
        observer: Observer | None = None,
        use_alarm: bool = True,
    ) -> None:
        self.client = client
        self.settings = settings
        self.router = router
        self.worker = worker
        self.observer: Observer = observer or NullObserver()
        self.use_alarm = use_alarm
        self.dead_letters = DeadLetters(client)
        self._time_limit = TimeLimit() if use_alarm else None
        self._lease_ms = int((settings.workers.handler_timeout + LEASE_MARGIN) * 1000)
        self._wait_replicas = settings.server.wait_replicas
        self._wait_ms = max(1, int(settings.server.wait_timeout * 1000))

    def done_ttl(self, source: str) -> float:
        """How long a done marker lives: at least the receiver's dedupe window."""
        src = self.settings.sources.get(source)
        window = src.dedupe_window if src is not None else DEFAULT_DEDUPE_WINDOW
        return max(window, DEFAULT_DEDUPE_WINDOW)

    def run_job(
        self, envelopes: Sequence[Envelope], should_stop: Callable[[], bool] = lambda: False
    ) -> JobResult:
        """Resolve every event of a job, stopping early (leases released) if asked to."""
        return self.run_jobs([envelopes], should_stop)[0]

    def run_jobs(
        self,
        jobs: Sequence[Sequence[Envelope]],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[JobResult]:
        """Resolve the events of several jobs, leasing all of them in one round trip.

        Once ``should_stop()`` is true, no further event starts: the leases not used are
        released and the jobs not finished come back marked ``interrupted``.
        """
        flat = [env for job in jobs for env in job]

        def lease_all(pipe: Pipeline) -> None:
            for env in flat:
                _LEASE.queue(
                    pipe,
                    [keys.lease(env.source, env.id), keys.done(env.source, env.id)],
                    [self.worker, self._lease_ms, keys.worker("")],
                )

        verdicts = iter(run_pipeline(self.client, lease_all, _SCRIPTS))
        if self._wait_replicas:
            # The leases (and the claim before them) reach a replica before any handler
            # runs, so a failover cannot hand the same event to a second worker meanwhile.
            self.client.wait(self._wait_replicas, self._wait_ms)
        results = []
        stopped = False
        seen: set[tuple[str, str]] = set()
        for job in jobs:
            counts: Counter[str] = Counter()
            for env in job:
                verdict = next(verdicts)
                if verdict != 0 or (env.source, env.id) in seen:
                    # Done, leased by another live worker, or a second copy in this batch
                    # (whose first copy resolves it): not run here.
                    counts["skipped"] += 1
                elif stopped or should_stop():
                    stopped = True
                    self._release_lease(env)
                else:
                    seen.add((env.source, env.id))
                    counts[self.run_event(env)] += 1
            results.append(JobResult.of(counts, interrupted=stopped))
        return results

    def _release_lease(self, env: Envelope) -> None:
        _RELEASE(self.client, [keys.lease(env.source, env.id)], [self.worker])

    def run_event(self, envelope: Envelope) -> str:
        """Run one leased event's handler and resolve it; returns the outcome's name."""
        event = Event.from_envelope(envelope)
        handler = self.router.find(event.source, event.type)
        if handler is None:
            bound = log.bind(
                source=event.source,
                event_id=event.id,
                event_type=event.type,
                attempt=event.attempt,
            )
            src = self.settings.sources.get(event.source)
            if src is not None and src.unhandled == "dead-letter":
                failed = self._record(envelope, LookupError("no handler for this event"), "")
                self._dead_letter(failed, "unhandled")
                self.observer.dead(event, "unhandled")
                bound.warning("event dead-lettered", reason="unhandled")
                return "dead"
            self._mark_done(envelope, ignored=True)
            self.observer.ignored(event)
            bound.info("event ignored: no handler")
            return "ignored"
        started = time.perf_counter()
        limit = self._time_limit
        try:
            if limit is not None:
                limit.arm(self.settings.workers.handler_timeout)
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    asyncio.run(_await(result))
            finally:
                if limit is not None:
                    limit.disarm()
        except Exception as exc:  # a handler may raise anything; that is what retries are for
            return self._failed(envelope, event, exc, time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        self._mark_done(envelope)
        self.observer.handled(event, elapsed)
        return "handled"

    def _lease_of(self, env: Envelope) -> tuple[str, str]:
        return keys.lease(env.source, env.id), self.worker

    def _persist(self, write: Callable[[], object]) -> None:
        """Run a resolution write, retrying while Redis is unreachable or failing over.

        The handler has already run: giving up here would make the event run again, so
        the worker keeps trying (holding its lease) for up to :data:`RESOLVE_PATIENCE`.
        """
        deadline = time.monotonic() + RESOLVE_PATIENCE
        pause = 0.05
        while True:
            try:
                write()
                return
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("resolution write failed; retrying", error=repr(exc), pause=pause)
                time.sleep(pause)
                pause = min(2.0, pause * 2)

    def _mark_done(self, env: Envelope, *, ignored: bool = False) -> None:
        self._persist(functools.partial(self._write_done, env, ignored))

    def _write_done(self, env: Envelope, ignored: bool) -> None:
        def build(pipe: Pipeline) -> None:
            ttl = int(self.done_ttl(env.source) * 1000)
            pipe.set(keys.done(env.source, env.id), self.worker, px=ttl)
            if ignored:
                pipe.hincrby(keys.ignored(), env.source, 1)
            _RELEASE.queue(pipe, [keys.lease(env.source, env.id)], [self.worker])

        self._execute(build, transaction=True)

    def _record(self, env: Envelope, exc: BaseException, tb: str, seconds: float = 0.0) -> Envelope:
        attempt = {
            "at": time.time(),
            "error_type": type(exc).__name__,
            "message": str(exc)[:MAX_MESSAGE],
            "traceback": tb[-MAX_TRACEBACK:],
            "worker": self.worker,
            "seconds": round(seconds, 6),
        }
        return Envelope(
            source=env.source,
            id=env.id,
            type=env.type,
            received_at=env.received_at,
            headers=env.headers,
            body=env.body,
            queue=env.queue,
            attempts=[*env.attempts, attempt],
        )

    def _dead_letter(self, failed: Envelope, reason: str) -> None:
        def build(pipe: Pipeline) -> None:
            lease = self._lease_of(failed)
            self.dead_letters.add(failed, reason=reason, worker=self.worker, lease=lease, pipe=pipe)

        self._persist(functools.partial(self._execute, build))

    def _write_retry(self, failed: Envelope, due: float) -> None:
        def build(pipe: Pipeline) -> None:
            pipe.zadd(keys.retries(), {failed.to_json(): due})
            _RELEASE.queue(pipe, [keys.lease(failed.source, failed.id)], [self.worker])

        self._execute(build, transaction=True)

    def _execute(self, build: Callable[[Pipeline], None], *, transaction: bool = False) -> None:
        """Execute an outcome's writes, then wait (best effort) for replicas to have them.

        With ``server.wait_replicas`` set, the outcome is on a replica before the job is
        acknowledged, so a failover right after does not forget that the event was done.
        A missing replica delays each outcome by ``wait_timeout`` but stops nothing.
        """
        run_pipeline(self.client, build, _SCRIPTS, transaction=transaction)
        if self._wait_replicas:
            acked = int(self.client.wait(self._wait_replicas, self._wait_ms))
            if acked < self._wait_replicas:
                log.warning("outcome not confirmed by replicas", confirmed=acked)

    def _failed(self, env: Envelope, event: Event, exc: Exception, seconds: float) -> str:
        failed = self._record(env, exc, traceback.format_exc(), seconds)
        policy = self.settings.source_retry(env.source)
        bound = log.bind(
            source=env.source,
            event_id=env.id,
            event_type=env.type,
            attempt=event.attempt,
            error=type(exc).__name__,
        )
        if isinstance(exc, PermanentError) or len(failed.attempts) >= policy.max_attempts:
            reason = "permanent" if isinstance(exc, PermanentError) else "exhausted"
            self._dead_letter(failed, reason)
            self.observer.dead(event, reason)
            bound.warning("event dead-lettered", reason=reason)
            return "dead"
        delay = backoff(policy, len(failed.attempts))
        self._persist(functools.partial(self._write_retry, failed, time.time() + delay))
        self.observer.retried(event, exc)
        bound.info("attempt failed; retry scheduled", delay=round(delay, 3))
        return "retried"


async def _await(result: Any) -> None:
    await result


def parse_job_data(data: bytes) -> list[Envelope]:
    """The envelopes carried by a hookline RQ job's ``data`` field."""
    _func, _instance, args, _kwargs = orjson.loads(data)
    return [Envelope.from_dict(item) for item in args[0]]
