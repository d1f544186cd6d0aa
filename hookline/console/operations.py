"""Replays and purges run by the console in the background, with visible progress.

A replay at a chosen rate can take hours, far longer than an HTTP request, so each
action becomes an :class:`Operation`: a :class:`hookline.dlq.ops.Bulk` (the same paced,
step-by-step atomic replay or purge as ``hookline dlq``) run in a worker thread, so the
event loop never waits on Redis or on the pacing. A progress page reads its counters
while it runs. Stopping it, or the console going down, between two steps loses and
doubles nothing; starting the same action again continues where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import structlog

from hookline.dlq.audit import AuditEntry, AuditLog
from hookline.dlq.ops import Bulk, Progress
from hookline.errors import BusyError

log = structlog.get_logger("hookline.console")

#: Finished operations remembered for their progress pages.
KEEP_FINISHED = 50
#: Seconds a stopping console waits for running operations to finish their step.
STOP_GRACE = 10.0
#: Operations running at once; each holds a thread of its own for as long as it runs.
MAX_RUNNING = 4

Kind = Literal["replay", "purge"]


@dataclass(eq=False)
class Operation:
    """One replay or purge and how far it has got.

    Attributes:
        kind: ``replay`` or ``purge``.
        what: what it acts on, in words.
        bulk: the work itself; its ``progress`` holds the counters.
        id: short random id, in the progress page's URL.
        state: ``running``, ``done``, ``stopped`` or ``failed``.
        error: what went wrong, when failed.
        who: who started it, for the audit log.
        audit: where its start and end are recorded (none: not recorded).
    """

    kind: Kind
    what: str
    bulk: Bulk
    who: str = ""
    audit: AuditLog | None = None
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    started: float = field(default_factory=time.time)
    state: str = "running"
    error: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def progress(self) -> Progress:
        """The counters of the work, updated as it goes."""
        return self.bulk.progress

    @property
    def rate(self) -> float | None:
        """The requested rate in events per second, ``None`` for as fast as Redis goes."""
        return self.bulk.rate

    @property
    def running(self) -> bool:
        """Whether it is still going."""
        return self.state == "running"

    @property
    def percent(self) -> int | None:
        """Progress in percent, when anything is expected."""
        total = self.progress.total
        return min(100, 100 * self.progress.handled // total) if total else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the requested (else the measured) rate."""
        progress = self.progress
        speed = self.rate or progress.rate
        if not self.running or speed <= 0:
            return None
        return max(0.0, (progress.total - progress.handled) / speed)

    def _record(self, state: str) -> None:
        if self.audit is None:
            return
        progress = self.progress
        counts = {"total": progress.total, "done": progress.done, "gone": progress.gone}
        counts["missing"] = len(progress.missing)
        self.audit.record(
            AuditEntry(self.kind, self.who, "console", self.what, state, counts, self.id)
        )

    async def run(self, executor: ThreadPoolExecutor) -> None:
        """Do the work in a thread of ``executor`` until it is done, stopped or fails."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._record, "started")
            work = functools.partial(self.bulk.run, should_stop=self.stop.is_set)
            progress = await loop.run_in_executor(executor, work)
            self.state = "stopped" if progress.interrupted else "done"
        except Exception as exc:  # Redis gone mid-way: the page shows it; nothing is half-moved
            self.state = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):  # Redis may be what failed
                await loop.run_in_executor(executor, self._record, self.state)
            log.info(
                "console operation finished",
                operation=self.id,
                kind=self.kind,
                what=self.what,
                state=self.state,
                done=self.progress.done,
                gone=self.progress.gone,
                missing=len(self.progress.missing),
                error=self.error or None,
            )


class Operations:
    """The console's operations, running and recently finished.

    They run in threads of their own, so that hours of paced replay never take the
    threads the pages use to read Redis.
    """

    def __init__(self, keep: int = KEEP_FINISHED, max_running: int = MAX_RUNNING) -> None:
        self._keep = keep
        self._max_running = max_running
        self._ops: dict[str, Operation] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._executor = ThreadPoolExecutor(max_running, thread_name_prefix="console-operation")

    def check_room(self) -> None:
        """Raise :class:`BusyError` when no other operation may start now."""
        if len(self._tasks) >= self._max_running:
            raise BusyError(
                f"{len(self._tasks)} operations are running already; "
                "wait for one to finish or stop one (see the overview)"
            )

    def start(self, op: Operation) -> Operation:
        """Run ``op`` in the background.

        Raises:
            BusyError: when :data:`MAX_RUNNING` operations are running already.
        """
        self.check_room()
        log.info(
            "console operation started",
            operation=op.id,
            kind=op.kind,
            what=op.what,
            rate=op.rate,
            total=op.progress.total,
        )
        self._ops[op.id] = op
        task = asyncio.create_task(op.run(self._executor), name=f"console-{op.kind}-{op.id}")
        self._tasks[op.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(op.id, None))
        finished = [o for o in self._ops.values() if not o.running]
        for old in finished[: max(0, len(finished) - self._keep)]:
            del self._ops[old.id]
        return op

    async def settle(self, op: Operation, within: float) -> None:
        """Wait up to ``within`` seconds for ``op`` to finish (small ones finish at once)."""
        task = self._tasks.get(op.id)
        if task is not None:
            await asyncio.wait({task}, timeout=within)

    def get(self, op_id: str) -> Operation | None:
        """The operation with that id, if remembered."""
        return self._ops.get(op_id)

    def recent(self) -> list[Operation]:
        """Remembered operations, newest first."""
        return sorted(self._ops.values(), key=lambda o: o.started, reverse=True)

    async def close(self) -> None:
        """Ask every running operation to stop after its current step, and wait for them."""
        for op in self._ops.values():
            op.stop.set()
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE)
        self._executor.shutdown(wait=False)
