"""Keep N forked child processes running: the loop under ``hookline work`` and
``hookline serve --processes N``.

Each child has a slot. A child that dies is replaced at once if it had been running a
while, or after a growing pause while its slot's children keep dying at start-up
(:class:`RestartBackoff`), so that a crash loop (Redis unreachable, a bad handler)
neither spins nor holds up another slot or a SIGTERM. The owner decides what a child
runs, handles the signals and says when to stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

import structlog

log = structlog.get_logger("hookline.supervisor")

#: Seconds between restarts of a child that keeps dying, at most.
MAX_RESTART_PAUSE = 30.0
#: Pause before restarting a child that died during its start-up; doubled each time
#: the slot's next child does so again.
FIRST_RESTART_PAUSE = 0.5
#: Seconds a child must have run for its death not to count as a start-up failure:
#: longer than start-up takes, Redis connect timeout (2 s) included.
HEALTHY_RUN = 5.0
#: Seconds between two looks at the children.
POLL_INTERVAL = 0.2


class RestartBackoff:
    """How long each slot waits before its child is started again.

    A child that dies during start-up is restarted after ``first`` seconds, then twice as
    long each time its successor does the same, up to ``most``. A child that had run
    ``healthy_after`` seconds is restarted at once, and its slot's pauses start over.
    """

    def __init__(
        self,
        *,
        first: float = FIRST_RESTART_PAUSE,
        most: float = MAX_RESTART_PAUSE,
        healthy_after: float = HEALTHY_RUN,
    ) -> None:
        self.first = first
        self.most = most
        self.healthy_after = healthy_after
        self._last: dict[int, float] = {}

    def pause(self, slot: int, ran_for: float) -> float:
        """Seconds to wait before restarting ``slot``, whose child died after ``ran_for`` s."""
        if ran_for >= self.healthy_after:
            self._last.pop(slot, None)
            return 0.0
        last = self._last.get(slot)
        pause = self.first if last is None else min(self.most, last * 2)
        self._last[slot] = pause
        return pause


class ProcessGroup:
    """``count`` children, one per slot, each started by ``spawn(slot)`` and kept running.

    Args:
        what: names the children in log lines ("worker", "receiver").
        spawn: starts and returns the child process of a slot.
        reaped: called with the slot and the process of each child found dead.
        finished: called with a dead child's exit code; true when its slot is done and
            is not to be refilled (a burst worker that emptied its queues).
    """

    def __init__(
        self,
        what: str,
        count: int,
        spawn: Callable[[int], BaseProcess],
        *,
        reaped: Callable[[int, BaseProcess], None] | None = None,
        finished: Callable[[int | None], bool] | None = None,
    ) -> None:
        self.what = what
        self.count = count
        self._spawn_child = spawn
        self._reaped = reaped
        self._finished = finished
        self.children: dict[int, BaseProcess] = {}
        self._started: dict[int, float] = {}
        self.stopping = False

    def stop(self) -> None:
        """Make :meth:`run` return at its next look (safe from a signal handler)."""
        self.stopping = True

    def any_alive(self) -> bool:
        """Whether at least one child runs."""
        return any(proc.is_alive() for proc in list(self.children.values()))

    def _spawn(self, slot: int) -> None:
        self._started[slot] = time.monotonic()
        proc = self._spawn_child(slot)
        self.children[slot] = proc
        log.info(f"{self.what} process started", slot=slot, pid=proc.pid)

    def run(self) -> None:
        """Start every slot's child and replace those that die, until :meth:`stop` (or
        until every slot is finished)."""
        for slot in range(self.count):
            self._spawn(slot)
        backoff = RestartBackoff()
        # Restarts are due at a deadline, never waited for in place: one slot's pause must
        # hold up neither another slot's restart nor a SIGTERM.
        restart_at: dict[int, float] = {}
        while not self.stopping and (self.children or restart_at):
            time.sleep(POLL_INTERVAL)
            now = time.monotonic()
            for slot, proc in list(self.children.items()):
                if proc.is_alive():
                    continue
                code = proc.exitcode
                del self.children[slot]
                if self._reaped is not None:
                    self._reaped(slot, proc)
                if self._finished is not None and self._finished(code):
                    continue
                ran_for = now - self._started[slot]
                pause = backoff.pause(slot, ran_for)
                log.error(
                    f"{self.what} process died; restarting",
                    slot=slot,
                    exitcode=code,
                    ran_for=round(ran_for, 1),
                    pause=pause,
                )
                restart_at[slot] = now + pause
            for slot, due in list(restart_at.items()):
                if due <= now and not self.stopping:
                    del restart_at[slot]
                    self._spawn(slot)

    def shutdown(self, grace: float) -> int:
        """SIGTERM every child, wait up to ``grace`` seconds, SIGKILL the rest.

        Returns:
            How many children had to be killed.
        """
        for proc in self.children.values():
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in self.children.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        killed = 0
        for proc in self.children.values():
            if proc.is_alive():
                proc.kill()
                proc.join()
                killed += 1
        for slot, proc in self.children.items():
            if self._reaped is not None:
                self._reaped(slot, proc)
        if killed:
            log.warning(f"killed {self.what}s that outlived the grace period", count=killed)
        return killed
