"""Enqueue envelopes as RQ jobs, deduplicated, in one atomic step.

Each job is a real RQ job (``rq info`` lists it; ``rq worker -S json`` can run it; its
format is in :mod:`hookline.redis.jobs`): one argument, the list of envelopes it carries. Several
events committed in the same round trip to the same queue, under the same depth limit,
share one job, so that the per-job cost of RQ's bookkeeping is paid once for all of them.

One Lua script (``lua/commit.lua``) commits a whole batch. It reads and checks everything
before it writes anything, so an error leaves nothing behind, and it writes each job
before the dedupe markers that point at it: there is never a dedupe marker without its job.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.exceptions import ResponseError

from hookline.envelope import Envelope
from hookline.errors import ReplicationError
from hookline.redis import keys
from hookline.redis.jobs import JOB_FUNC, JOB_TIMEOUT, rq_timestamp
from hookline.redis.marks import digest, fingerprint_mark, marks_window
from hookline.redis.scripts import load_script


class Outcome(enum.IntEnum):
    """What happened to one event of a batch."""

    ENQUEUED = 0
    DUPLICATE = 1
    QUEUE_FULL = 2
    QUEUE_BROKEN = 3
    #: Its replay marker exists: the same signed body was accepted under another id.
    REPLAY = 4


class Pending:
    """One event to commit: its envelope, its dedupe window (0: no dedupe), the queue depth
    at which it is refused (0: none) and the fingerprint of what its signature covers, if
    the source guards against replays (its mark is kept as long as the event's).

    The envelope is serialised here, when the event is handed over, not inside the
    batch commit: an envelope that cannot be stored fails its own request, never the
    other events it would have been committed with. (A plain class with slots: the
    receiver builds one per request, and a frozen dataclass costs twice as much.)

    Raises:
        TypeError: when the envelope cannot be serialised (``orjson.JSONEncodeError``).
    """

    __slots__ = ("data", "dedupe_ttl", "envelope", "max_depth", "replay")

    def __init__(
        self, envelope: Envelope, dedupe_ttl: float, max_depth: int = 0, replay: bytes = b""
    ) -> None:
        self.envelope = envelope
        self.dedupe_ttl = dedupe_ttl
        self.max_depth = max_depth
        self.replay = replay
        #: The envelope as stored: JSON bytes.
        self.data = envelope.to_json()

    def __repr__(self) -> str:
        return f"Pending({self.envelope!r}, {self.dedupe_ttl!r}, {self.max_depth!r})"


#: The commit script (``lua/commit.lua``): blocking clients call it by SHA1, the
#: receiver's :class:`AsyncEnqueuer` sends its source.
_COMMIT = load_script("commit")
_SCRIPT = _COMMIT.source


def _groups(batch: Sequence[Pending]) -> dict[tuple[str, int], list[int]]:
    """The positions in ``batch`` of the events of each job: same queue, same depth limit.

    Events share a job only when they share their limit, so each event is held to its
    own source's ``max_queue_depth``, however many sources feed the queue.
    """
    groups: dict[tuple[str, int], list[int]] = {}
    for index, item in enumerate(batch):
        groups.setdefault((item.envelope.queue, item.max_depth), []).append(index)
    return groups


#: Each outcome by the code the script returns for it.
_OUTCOMES = tuple(Outcome)


def _arguments(batch: Sequence[Pending]) -> tuple[list[str], list[Any], list[int]]:
    """The script's keys and arguments, and the positions in ``batch`` in the order the
    script answers them (grouped by job)."""
    groups = _groups(batch)
    script_keys: list[str] = [keys.RQ_QUEUES]
    args: list[Any] = [rq_timestamp(), len(groups)]
    order: list[int] = []
    for (queue, max_depth), indexes in groups.items():
        items = [batch[index] for index in indexes]
        job_id = uuid.uuid4().hex
        sources = sorted({i.envelope.source for i in items})
        script_keys += [keys.rq_queue(queue), keys.rq_job(job_id)]
        args += [
            queue,
            job_id,
            max_depth,
            len(items),
            JOB_TIMEOUT,
            f"hookline: {len(items)} event(s) from {', '.join(sources)}",
        ]
        for item in items:
            env = item.envelope
            shard, field = digest(env.id)
            script_keys.append(keys.marks(env.source))
            window = int(marks_window(item.dedupe_ttl) * 1000)
            args += [int(item.dedupe_ttl * 1000), window, shard, field]
            if item.replay:
                args += [1, *fingerprint_mark(item.replay), item.data]
            else:
                args += [0, item.data]
        order += indexes
    args.append(JOB_FUNC)
    return script_keys, args, order


def _outcomes(order: Sequence[int], raw: Sequence[int]) -> list[Outcome]:
    """Map the script's grouped answers back to the order of the batch."""
    result = [Outcome.ENQUEUED] * len(order)
    for index, code in zip(order, raw, strict=True):
        result[index] = _OUTCOMES[code]
    return result


class AsyncEnqueuer:
    """Commits batches with an asyncio client: one round trip per batch.

    With ``wait_replicas`` set, the commit and a ``WAIT`` for that many replicas go
    in the same round trip; too few confirmations raise :class:`ReplicationError`, so
    the caller does not acknowledge (the event is kept, and a redelivery is a duplicate).

    The batch is written to a pooled connection directly (replaced if dead, and sent
    once more only where that cannot double an event: :func:`_commit_once_more`),
    rather than through ``Redis.execute_command``: redis-py 8's
    per-command layer (observability hooks, nested retry wrappers) cost about as much
    CPU as the rest of a 32-event commit. The script goes as ``EVAL``: Redis finds it
    compiled by its digest, and a restarted server never answers ``NOSCRIPT``.
    """

    def __init__(
        self, client: aioredis.Redis, *, wait_replicas: int = 0, wait_timeout: float = 0.5
    ) -> None:
        self._client = client
        self._wait_replicas = wait_replicas
        self._wait_ms = max(1, int(wait_timeout * 1000))

    async def commit(self, batch: Sequence[Pending]) -> list[Outcome]:
        """Commit ``batch`` atomically and return each event's outcome, in order.

        Raises:
            redis.RedisError: what Redis or the connection raised (after its retries).
            ReplicationError: when fewer replicas than required confirmed in time.
        """
        script_keys, args, order = _arguments(batch)
        commands: list[tuple[Any, ...]] = [("EVAL", _SCRIPT, len(script_keys), *script_keys, *args)]
        if self._wait_replicas:
            commands.append(("WAIT", self._wait_replicas, self._wait_ms))
        pool = self._client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]  # untyped in redis-py 8
        try:
            replies = await _commit_once_more(conn, commands, retry=_retry_safe(batch))
        finally:
            await pool.release(conn)
        if self._wait_replicas and int(replies[1]) < self._wait_replicas:
            raise ReplicationError(
                f"{replies[1]} of {self._wait_replicas} replica(s) confirmed "
                f"within {self._wait_ms} ms"
            )
        return _outcomes(order, replies[0])


def _retry_safe(batch: Sequence[Pending]) -> bool:
    """Whether committing ``batch`` a second time can double nothing.

    A commit whose connection fails after the script was sent may or may not have run.
    Sent again, an event with a dedupe marker finds the marker the first run wrote (if
    it ran: the script is atomic, so it wrote every marker and job or none) and is
    answered a duplicate: it is in Redis once either way, and a 2xx is right. An event
    without dedupe (``dedupe_ttl`` 0) has no marker to find and would be enqueued a
    second time, so a batch holding one is never sent again once it may have reached
    Redis (the caller answers 503 and the provider retries, as before).
    """
    return all(item.dedupe_ttl > 0 for item in batch)


async def _commit_once_more(
    conn: AsyncConnection, commands: Sequence[tuple[Any, ...]], *, retry: bool
) -> list[Any]:
    """Send ``commands`` on ``conn``, on a fresh connection if the pooled one is dead.

    A pooled connection that the server closed while it sat idle (Redis restarted)
    still looks connected: redis-py 8's pool skips its own check for that when
    maintenance notifications are on, as they are by default. Such a connection shows
    end of file in its buffer, seen here without a system call, and is replaced before
    anything is sent (safe for every batch). One that dies once the commands are on
    their way (a reset, a restart in between) is replaced and the batch sent once more
    only when ``retry`` (see :func:`_retry_safe`); a second failure is raised.
    """
    # can_read is redis-py 8's name for can_read_destructive (deprecated there).
    if conn.is_connected and await getattr(conn, "can_read", conn.can_read_destructive)():
        await conn.disconnect()  # closed by the server, or holding stray bytes: reconnect
    try:
        return await _exchange(conn, commands)
    except redis.ConnectionError:
        if not retry:
            raise
    return await _exchange(conn, commands)  # _exchange left it disconnected: this reconnects


async def _exchange(conn: AsyncConnection, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Write ``commands`` at once and read every reply, in order.

    An error reply is raised once all replies are read, so the connection stays in
    step; any other failure (lost connection, cancellation) leaves it disconnected.
    """
    replies: list[Any] = []
    failed: ResponseError | None = None
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                failed = failed or exc
                replies.append(None)
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    if failed is not None:
        raise failed
    return replies


class Enqueuer:
    """Commits batches with a blocking client (workers, replays, command-line tools)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def commit(self, batch: Sequence[Pending]) -> list[Outcome]:
        """Commit ``batch`` atomically and return each event's outcome, in order."""
        script_keys, args, order = _arguments(batch)
        raw = _COMMIT(self._client, script_keys, args)
        return _outcomes(order, raw)
