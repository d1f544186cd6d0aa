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

import redis
import structlog
from redis.client import Pipeline

from hookline.config.settings import DEFAULT_DEDUPE_WINDOW, Settings
from hookline.dlq.store import DeadLetters
from hookline.envelope import Envelope
from hookline.errors import PermanentError
from hookline.redis import keys
from hookline.redis.jobs import parse_job_data as parse_job_data  # moved; worker.py imports it here
from hookline.redis.scripts import Script, run_pipeline
from hookline.workers.handlers import Event, Router
from hookline.workers.retry import TimeLimit, backoff

log = structlog.get_logger("hookline.worker")

#: Longest traceback kept per attempt, in characters (the end is kept).
MAX_TRACEBACK = 4000
#: Longest error message kept per attempt.
MAX_MESSAGE = 1000
#: Extra lease time beyond the handler time limit.
LEASE_MARGIN = 30.0
#: How long a worker keeps retrying the write that records an outcome (within the lease).
RESOLVE_PATIENCE = LEASE_MARGIN / 2

#: A worker died this many times while running an event: it is dead-lettered as ``crashed``
#: instead of taking down worker after worker and blocking its queue.
CRASH_LIMIT = 3
#: How long an event whose lease another live worker holds waits before it is looked at again.
DEFER_SECONDS = 5.0

# KEYS: lease, done, crashes. ARGV: me, ttl ms, heartbeat key prefix.
# Returns {verdict, crashes}; verdict 0: lease taken; 1: already done; 2: a live worker holds it.
_LEASE = Script("""
if redis.call('EXISTS', KEYS[2]) == 1 then return {1, 0} end
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return {2, 0}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {0, tonumber(redis.call('GET', KEYS[3]) or '0')}
""")

# KEYS: leases... ARGV: me, ttl ms. Extends the leases still ours; returns 1/0 for each.
_EXTEND = Script("""
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
""")

_RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
""")
_SCRIPTS = (_LEASE, _RELEASE, _EXTEND)


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
    #: Envelopes not started because the worker was stopping: the job still owes them.
    unresolved: tuple[Envelope, ...] = ()

    @classmethod
    def of(cls, counts: Counter[str], *, unresolved: Sequence[Envelope] = ()) -> JobResult:
        """Build from counts keyed by outcome name."""
        return cls(
            handled=counts["handled"],
            skipped=counts["skipped"],
            retried=counts["retried"],
            dead=counts["dead"],
            ignored=counts["ignored"],
            unresolved=tuple(unresolved),
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
        self._following: Envelope | None = None
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
        released, and each job comes back with the envelopes it still owes
        (``JobResult.unresolved``), for the caller to put back on the queue.
        """
        flat = [env for job in jobs for env in job]

        def lease_all(pipe: Pipeline) -> None:
            for env in flat:
                _LEASE.queue(
                    pipe,
                    [
                        keys.lease(env.source, env.id),
                        keys.done(env.source, env.id),
                        keys.crashes(env.source, env.id),
                    ],
                    [self.worker, self._lease_ms, keys.worker("")],
                )

        verdicts = run_pipeline(self.client, lease_all, _SCRIPTS)
        leased_at = time.monotonic()
        if self._wait_replicas:
            # The leases (and the claim before them) reach a replica before any handler
            # runs, so a failover cannot hand the same event to a second worker meanwhile.
            self.client.wait(self._wait_replicas, self._wait_ms)
        ours = [
            (env, int(crashed))
            for env, (verdict, crashed) in zip(flat, verdicts, strict=True)
            if int(verdict) == 0
        ]
        deferred = [env for env, (v, _) in zip(flat, verdicts, strict=True) if int(v) == 2]
        if deferred:
            self._defer(deferred)
        runnable = self._first_copies(ours)
        position = {id(env): n for n, (env, _) in enumerate(runnable)}
        if runnable:
            self._set_current(runnable[0][0])
        results = []
        stopped = False
        lost: set[int] = set()
        for job in jobs:
            counts: Counter[str] = Counter()
            unresolved: list[Envelope] = []
            for env in job:
                n = position.get(id(env))
                if n is None:
                    counts["skipped"] += 1
                    continue
                if stopped or should_stop():
                    stopped = True
                    self._release_lease(env)
                    unresolved.append(env)
                    continue
                if time.monotonic() - leased_at > self._lease_ms / 2000:
                    lost |= self._extend([e for e, _ in runnable[n:]])
                    leased_at = time.monotonic()
                if id(env) in lost:
                    counts["skipped"] += 1  # the lease was taken over: its holder resolves it
                    continue
                following = runnable[n + 1][0] if n + 1 < len(runnable) else None
                counts[self.run_event(env, crashed=runnable[n][1], following=following)] += 1
            results.append(JobResult.of(counts, unresolved=unresolved))
        if runnable and self._following is not None:
            self._set_current(None)  # the event named last never ran: blame nothing
        return results

    @staticmethod
    def _first_copies(ours: list[tuple[Envelope, int]]) -> list[tuple[Envelope, int]]:
        """Drop second copies of an event within one claim: the first copy resolves it."""
        seen: set[tuple[str, str]] = set()
        first = []
        for env, crashed in ours:
            if (env.source, env.id) not in seen:
                seen.add((env.source, env.id))
                first.append((env, crashed))
        return first

    def _extend(self, rest: Sequence[Envelope]) -> set[int]:
        """Extend the leases of ``rest``; return the ``id()`` of those no longer ours.

        A long claim can outlast its leases; half-way through their life they are renewed,
        and an event whose lease was taken over (its heartbeat lapsed) is left to its holder.
        """
        lease_keys = [keys.lease(env.source, env.id) for env in rest]
        held = _EXTEND(self.client, lease_keys, [self.worker, self._lease_ms])
        return {id(env) for env, ok in zip(rest, held, strict=True) if not int(ok)}

    def _defer(self, envelopes: Sequence[Envelope]) -> None:
        """Look again later at events another live worker is running, unless a retry waits.

        The holder resolves the event; if it dies instead, the deferred copy runs it. The
        copy is never simply dropped: the holder's job may have been requeued elsewhere.
        """
        due = time.time() + DEFER_SECONDS

        def build(pipe: Pipeline) -> None:
            for env in envelopes:
                member = keys.retry_member(env.source, env.id)
                pipe.hsetnx(keys.retry_envelopes(), member, env.to_json())
                pipe.zadd(keys.retries(), {member: due}, nx=True)

        run_pipeline(self.client, build, _SCRIPTS, transaction=True)

    def _set_current(
        self, env: Envelope | None, target: redis.Redis | Pipeline | None = None
    ) -> None:
        """Record which event this worker runs (None: none), now or in ``target``'s pipeline.

        The reaper counts a crash against it should the worker die.
        """
        client = self.client if target is None else target
        current = keys.worker_current(self.worker)
        if env is None:
            client.delete(current)
        else:
            client.set(current, keys.crashes(env.source, env.id))

    def _release_lease(self, env: Envelope) -> None:
        _RELEASE(self.client, [keys.lease(env.source, env.id)], [self.worker])

    def run_event(
        self, envelope: Envelope, *, crashed: int = 0, following: Envelope | None = None
    ) -> str:
        """Run one leased event's handler and resolve it; returns the outcome's name.

        Args:
            envelope: the event, leased by this worker.
            crashed: how many workers died running it; at :data:`CRASH_LIMIT` it is
                dead-lettered without running again.
            following: the event this worker runs next, recorded with this outcome as
                the one to blame should the worker die (None: nothing).
        """
        self._following = following
        event = Event.from_envelope(envelope)
        if crashed >= CRASH_LIMIT:
            died = RuntimeError(f"a worker process died {crashed} times while running this event")
            failed = self._record(envelope, died, "")
            self._dead_letter(failed, "crashed")
            self.observer.dead(event, "crashed")
            log.error("event dead-lettered", reason="crashed", source=event.source,
                      event_id=event.id, crashes=crashed)  # fmt: skip
            return "dead"
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
            self._queue_current(pipe)

        self._execute(build, transaction=True)

    def _queue_current(self, pipe: Pipeline) -> None:
        """Record, with an outcome, which event this worker runs next."""
        self._set_current(self._following, pipe)

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
            pipe.delete(keys.crashes(failed.source, failed.id))  # a replay starts afresh
            self._queue_current(pipe)

        self._persist(functools.partial(self._execute, build))

    def _write_retry(self, failed: Envelope, due: float) -> None:
        def build(pipe: Pipeline) -> None:
            member = keys.retry_member(failed.source, failed.id)
            pipe.hset(keys.retry_envelopes(), member, failed.to_json())
            pipe.zadd(keys.retries(), {member: due})
            _RELEASE.queue(pipe, [keys.lease(failed.source, failed.id)], [self.worker])
            self._queue_current(pipe)

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
