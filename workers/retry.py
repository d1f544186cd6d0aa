"""Backoff with full jitter, and the handler time limit."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from config.settings import RetryPolicy
from hookline.errors import HandlerTimeout


def backoff(policy: RetryPolicy, failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1-based).

    Full jitter (uniform between 0 and the exponential ceiling) spreads the retries of
    events that failed together, so a recovering dependency is not hit by a wave.
    """
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (failures - 1))
    return (rng or random).uniform(0, ceiling)


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`HandlerTimeout` inside the block once ``seconds`` have passed.

    Uses SIGALRM, so it interrupts Python code and blocking system calls alike; it
    only works in the main thread and does nothing elsewhere (and for ``seconds <= 0``).
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise HandlerTimeout(f"handler ran past its {seconds:g}s time limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
