"""The worker loop: claim jobs reliably, run their events, acknowledge, keep house.

Claiming moves job ids from an RQ queue into this worker's own list in one atomic
step, so a job is always in a queue or in exactly one worker's list. A heartbeat key,
refreshed by a thread, says the worker is alive; when it expires (the process was
killed), any worker's housekeeping moves the dead worker's jobs back to the front of
their queues. Housekeeping also promotes due retries into new jobs, so no separate
scheduler process is needed.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from types import FrameType

import orjson
import redis
import structlog

from hookline.config.settings import DEFAULT_DEDUPE_WINDOW, Settings
from hookline.envelope import Envelope
from hookline.errors import EnvelopeError
from hookline.redis import keys
from hookline.redis.connection import as_str, sync_client
from hookline.redis.jobs import JOB_FUNC, JOB_TIMEOUT, rq_timestamp
from hookline.redis.scripts import WRITE_JOB, Script
from hookline.workers.handlers import Router, load_router
from hookline.workers.runner import Observer, Processor, parse_job_data

log = structlog.get_logger("hookline.worker")

#: A worker whose heartbeat is this old is dead; its jobs go back to their queues.
HEARTBEAT_TTL = 5.0
#: How often the heartbeat is refreshed.
HEARTBEAT_EVERY = 1.0
#: How often housekeeping (retries, dead workers, retention) runs.
HOUSEKEEPING_EVERY = 1.0
#: Most jobs claimed at once.
CLAIM_BATCH = 16
#: Longest a worker blocks waiting for work before housekeeping.
BLOCK_SECONDS = 1.0

# KEYS: worker jobs list. ARGV: max jobs, id already moved into the list (or ''), queue keys...
# Returns a flat list: job id, job data, job id, job data, ...
_CLAIM = Script("""
local out, want = {}, tonumber(ARGV[1])
if ARGV[2] ~= '' then
  local data = redis.call('HGET', 'rq:job:' .. ARGV[2], 'data')
  if data then
    out[1], out[2] = ARGV[2], data
    want = want - 1
  else
    redis.call('LREM', KEYS[1], 0, ARGV[2])
  end
end
for i = 3, #ARGV do
  if want <= 0 then break end
  local ids = redis.call('LPOP', ARGV[i], want)
  if ids then
    for _, id in ipairs(ids) do
      local data = redis.call('HGET', 'rq:job:' .. id, 'data')
      if data then
        redis.call('RPUSH', KEYS[1], id)
        out[#out + 1] = id
        out[#out + 1] = data
        want = want - 1
      end
    end
  end
end
return out
""")

# KEYS: worker jobs list. ARGV: job ids to give back (front of their queues, order kept).
_GIVE_BACK = Script("""
for i = #ARGV, 1, -1 do
  local id = ARGV[i]
  local origin = redis.call('HGET', 'rq:job:' .. id, 'origin')
  redis.call('LREM', KEYS[1], 0, id)
  if origin then redis.call('LPUSH', 'rq:queue:' .. origin, id) end
end
return #ARGV
""")

# KEYS: worker jobs list, old job. ARGV: old id, new id, queue, rq time, func, timeout, envelopes...
# Puts a job's unfinished envelopes back, as a new job at the front of the queue, in place of it.
_REPLACE = Script(
    WRITE_JOB
    + """
local owed = {}
for i = 7, #ARGV do owed[#owed + 1] = ARGV[i] end
write_job('rq:queue:' .. ARGV[3], 'rq:job:' .. ARGV[2], ARGV[3], ARGV[2], ARGV[4], ARGV[6],
  'hookline: ' .. #owed .. ' event(s) given back', ARGV[5], owed, true)
redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('DEL', KEYS[2])
return #owed
"""
)

# KEYS: workers set. ARGV: worker key prefix, crash count ttl seconds.
# Requeues the jobs of workers without heartbeat, and counts a crash against the event
# each was running.
_REAP = Script("""
local requeued = 0
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local hb = ARGV[1] .. name
  if redis.call('EXISTS', hb) == 0 then
    local current = redis.call('GET', hb .. ':current')
    if current then
      redis.call('INCR', current)
      redis.call('EXPIRE', current, ARGV[2])
      redis.call('DEL', hb .. ':current')
    end
    local list = hb .. ':jobs'
    local ids = redis.call('LRANGE', list, 0, -1)
    for i = #ids, 1, -1 do
      local origin = redis.call('HGET', 'rq:job:' .. ids[i], 'origin')
      if origin then
        redis.call('LPUSH', 'rq:queue:' .. origin, ids[i])
        requeued = requeued + 1
      end
    end
    redis.call('DEL', list)
    redis.call('SREM', KEYS[1], name)
  end
end
return requeued
""")

# KEYS: retry set, retry envelopes. ARGV: now, rq time, func, timeout, limit, job id prefix.
_PROMOTE = Script(
    WRITE_JOB
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[5])
local byqueue, order = {}, {}
for _, member in ipairs(due) do
  local envelope = redis.call('HGET', KEYS[2], member)
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
  if envelope then
    local queue = cjson.decode(envelope)['queue']
    if not byqueue[queue] then byqueue[queue] = {}; order[#order + 1] = queue end
    table.insert(byqueue[queue], envelope)
  end
end
for i, queue in ipairs(order) do
  local jid = ARGV[6] .. i
  write_job('rq:queue:' .. queue, 'rq:job:' .. jid, queue, jid, ARGV[2], ARGV[4],
    'hookline: ' .. #byqueue[queue] .. ' retried event(s)', ARGV[3], byqueue[queue], false)
end
return #due
"""
)


def new_worker_name() -> str:
    """A unique worker name: host, pid and a random suffix."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"


class Worker:
    """One worker process: claims jobs from ``queues`` and resolves their events."""

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        *,
        queues: Sequence[str] | None = None,
        router: Router | None = None,
        name: str | None = None,
        burst: bool = False,
        observer: Observer | None = None,
        parent_pid: int | None = None,
    ) -> None:
        self.settings = settings
        self.parent_pid = parent_pid
        self.redis_url = redis_url
        self.queues = list(queues or settings.workers.queues)
        self.name = name or new_worker_name()
        self.burst = burst
        self.client = sync_client(redis_url)
        self.router = router if router is not None else load_router(settings.workers.handlers)
        self.processor = Processor(self.client, settings, self.router, self.name, observer=observer)
        self._stopping = threading.Event()
        self._heartbeat_stop = threading.Event()
        self._jobs_key = keys.worker_jobs(self.name)
        self._last_housekeeping = 0.0
        self.log = log.bind(worker=self.name)

    # -- lifecycle -------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        """Finish the event in progress, give back the rest, then exit (warm shutdown)."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT request a warm shutdown."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self.log.info("warm shutdown requested", signal=signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        """Work until stopped (or, in burst mode, until nothing is left); returns 0."""
        self._register()
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        self.log.info("worker started", queues=self.queues, routes=len(self.router))
        try:
            while not self._stopping.is_set():
                self._housekeeping()
                if not self._work_once() and self.burst:
                    if not self._retries_due():
                        break
                    self.promote_retries()
        finally:
            self._heartbeat_stop.set()
            beat.join(timeout=5)
            self._deregister()
            self.log.info("worker stopped")
        return 0

    def _register(self) -> None:
        with self.client.pipeline() as pipe:
            pipe.set(keys.worker(self.name), str(os.getpid()), px=int(HEARTBEAT_TTL * 1000))
            pipe.sadd(keys.workers(), self.name)
            pipe.execute()

    def _deregister(self) -> None:
        try:
            leftover = [as_str(i) for i in self.client.lrange(self._jobs_key, 0, -1)]
            if leftover:
                _GIVE_BACK(self.client, [self._jobs_key], leftover)
            with self.client.pipeline() as pipe:
                pipe.delete(keys.worker(self.name), self._jobs_key, keys.worker_current(self.name))
                pipe.srem(keys.workers(), self.name)
                pipe.execute()
        except redis.RedisError as exc:
            # Redis is gone: the heartbeat expires and another worker requeues our jobs.
            self.log.warning("could not deregister", error=repr(exc))

    def _heartbeat(self) -> None:
        client = sync_client(self.redis_url)
        try:
            while not self._heartbeat_stop.wait(HEARTBEAT_EVERY):
                try:
                    client.set(
                        keys.worker(self.name), str(os.getpid()), px=int(HEARTBEAT_TTL * 1000)
                    )
                    client.sadd(keys.workers(), self.name)
                except redis.RedisError as exc:
                    self.log.warning("heartbeat failed", error=repr(exc))
        finally:
            client.close()

    # -- work ------------------------------------------------------------------------

    def _work_once(self) -> bool:
        """Claim and run a batch of jobs; returns whether there was any work."""
        try:
            claimed = self._claim_jobs()
        except redis.RedisError as exc:
            self.log.warning("cannot claim jobs", error=repr(exc))
            self._stopping.wait(1.0)
            return True
        if not claimed:
            return False
        self._run_jobs(claimed)
        return True

    def _claim_jobs(self) -> list[tuple[str, bytes]]:
        queue_keys = [keys.rq_queue(q) for q in self.queues]
        raw = _CLAIM(self.client, [self._jobs_key], [CLAIM_BATCH, "", *queue_keys])
        if not raw and not self.burst:
            # Nothing waiting: block on the first queue until a job arrives (or a timeout),
            # moving it into our list atomically; other queues are polled on the next pass.
            wait: float = BLOCK_SECONDS if len(self.queues) == 1 else 0.1
            # Redis takes fractional seconds; redis-py's annotation says int.
            timeout: int = wait  # type: ignore[assignment]
            moved = self.client.blmove(queue_keys[0], self._jobs_key, timeout, "LEFT", "RIGHT")
            if moved is None:
                return []
            # Fetch it, and whatever else arrived meanwhile, in one more round trip.
            raw = _CLAIM(self.client, [self._jobs_key], [CLAIM_BATCH, as_str(moved), *queue_keys])
        return [(as_str(raw[i]), raw[i + 1]) for i in range(0, len(raw), 2)]

    def _run_jobs(self, claimed: list[tuple[str, bytes]]) -> None:
        """Run every event of the claimed jobs, then acknowledge the finished jobs at once."""
        runnable: list[tuple[str, list[Envelope]]] = []
        for job_id, data in claimed:
            try:
                runnable.append((job_id, parse_job_data(data)))
            except (
                orjson.JSONDecodeError,
                EnvelopeError,
                ValueError,
                TypeError,
                IndexError,
            ) as exc:
                self.log.error(
                    "job is not a hookline job; set aside", job_id=job_id, error=repr(exc)
                )
                with self.client.pipeline() as pipe:
                    pipe.lrem(self._jobs_key, 0, job_id)
                    pipe.rpush(keys.broken_jobs(), job_id)
                    pipe.execute()
        results = self.processor.run_jobs([envs for _, envs in runnable], self._stopping.is_set)
        finished = []
        for (job_id, _), result in zip(runnable, results, strict=True):
            if not result.unresolved:
                finished.append(job_id)
                continue
            # Only what the job still owes goes back, as a new job at the front of its
            # queue: events already resolved (retried, dead-lettered) must not run again,
            # and the original job may be gone (requeued and run by another worker).
            owed = result.unresolved
            _REPLACE(
                self.client,
                [self._jobs_key, keys.rq_job(job_id)],
                [
                    job_id, f"owed-{uuid.uuid4().hex}", owed[0].queue, rq_timestamp(), JOB_FUNC,
                    JOB_TIMEOUT, *(env.to_json() for env in owed),
                ],
            )  # fmt: skip
        if finished:
            with self.client.pipeline() as pipe:
                for job_id in finished:
                    pipe.lrem(self._jobs_key, 0, job_id)
                    pipe.delete(keys.rq_job(job_id))
                pipe.execute()

    # -- housekeeping ----------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.time()
        if now - self._last_housekeeping < HOUSEKEEPING_EVERY:
            return
        self._last_housekeeping = now
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.log.warning("supervisor is gone; stopping")
            self.request_stop()
        try:
            requeued = _REAP(
                self.client, [keys.workers()], [keys.worker(""), int(DEFAULT_DEDUPE_WINDOW)]
            )
            if requeued:
                self.log.warning("requeued jobs of dead workers", jobs=requeued)
            self.promote_retries(now)
            retention = self.settings.workers.dead_letter_retention
            if retention:
                self.processor.dead_letters.expire(now - retention)
        except redis.RedisError as exc:
            self.log.warning("housekeeping failed", error=repr(exc))

    def promote_retries(self, now: float | None = None) -> int:
        """Move retries that are due into new jobs on their queues; returns how many."""
        total = 0
        while True:
            moved = int(
                _PROMOTE(
                    self.client,
                    [keys.retries(), keys.retry_envelopes()],
                    [
                        now or time.time(),
                        rq_timestamp(),
                        JOB_FUNC,
                        JOB_TIMEOUT,
                        200,
                        f"retry-{uuid.uuid4().hex}-",
                    ],
                )
            )
            total += moved
            if moved < 200:
                return total

    def _retries_due(self) -> bool:
        return bool(self.client.zcount(keys.retries(), "-inf", time.time()))
