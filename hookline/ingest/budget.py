"""One memory bound for every request body the receiver holds before answering.

A body is buffered whole before its signature can be checked, and each source allows up
to its ``max_body`` (GitHub's events reach 25 MB). Without a bound across requests, a
burst of large or unauthenticated uploads could hold any amount of memory; with one,
the request that would go over it is answered ``503`` + ``Retry-After`` and the provider
retries later.
"""

from __future__ import annotations

from types import TracebackType


class BodyBudget:
    """Bytes of request bodies held at once, across all requests, up to ``limit``."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def hold(self) -> BodyReservation:
        """A reservation for one request, released when its ``with`` block ends."""
        return BodyReservation(self)


class BodyReservation:
    """What one request holds of a :class:`BodyBudget`."""

    __slots__ = ("_budget", "held")

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.held = 0

    def take(self, size: int) -> bool:
        """Reserve ``size`` more bytes; ``False`` (nothing reserved) when over the limit."""
        budget = self._budget
        if budget.used + size > budget.limit:
            return False
        budget.used += size
        self.held += size
        return True

    def __enter__(self) -> BodyReservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._budget.used -= self.held
        self.held = 0
