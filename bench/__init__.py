"""Benchmarks of hookline, run by name: ``./run bench NAME`` (``python -m bench NAME``).

Benchmarks are not tests: they measure, print figures and check only that what they
measured was correct (every acknowledged event is in Redis). Each lives in its own
module with a ``main(argv) -> int``, registered in :mod:`bench.__main__`.
"""

from __future__ import annotations

from hookline.errors import HooklineError


class BenchError(HooklineError):
    """Raised when a benchmark cannot run: a tool missing, a server that does not start."""
