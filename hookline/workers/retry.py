"""Backoff with full jitter, and the handler time limit."""

from __future__ import annotations

import random
import signal
import threading
from types import FrameType

from hookline.config.settings import RetryPolicy
from hookline.errors import HandlerTimeout


def backoff(policy: RetryPolicy, failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1-based).

    Full jitter (uniform between 0 and the exponential ceiling) spreads the retries of
    events that failed together, so a recovering dependency is not hit by a wave.
    """
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (failures - 1))
    return (rng or random).uniform(0, ceiling)


class TimeLimit:
    """Raises :class:`HandlerTimeout` inside a handler that runs past its limit.

    SIGALRM interrupts Python code and blocking system calls alike. The signal handler
    is installed once, on first use; each call then only arms and disarms the timer.
    It works in the main thread and does nothing in others (and for ``seconds <= 0``).
    """

    def __init__(self) -> None:
        self._seconds = 0.0
        self._installed = False

    def _expire(self, signum: int, frame: FrameType | None) -> None:
        if self._seconds:  # a stale alarm after disarm() is ignored
            raise HandlerTimeout(f"handler ran past its {self._seconds:g}s time limit")

    def arm(self, seconds: float) -> None:
        """Start the clock for one handler call."""
        if seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return
        if not self._installed:
            signal.signal(signal.SIGALRM, self._expire)
            self._installed = True
        self._seconds = seconds
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def disarm(self) -> None:
        """Stop the clock."""
        if self._seconds:
            self._seconds = 0.0
            signal.setitimer(signal.ITIMER_REAL, 0)
