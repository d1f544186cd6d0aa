"""One memory bound for every request body the receiver holds before answering.

A body is buffered whole before its signature can be checked, and each source allows up
to its ``max_body`` (GitHub's events reach 25 MB). Without a bound across requests, a
burst of large or unauthenticated uploads could hold any amount of memory; with one,
the request that would go over it is answered ``503`` + ``Retry-After`` and the provider
retries later.

Bytes are counted as they arrive, never as a ``Content-Length`` promises: a connection
that declares 25 MiB and sends nothing holds nothing, so idle connections cannot take
the budget from the requests that do send. And the bodies from one client address may
hold only its share (``server.max_buffered_per_client``), so a few addresses sending
large bodies slowly cannot take it either; a body that arrives too slowly is cut off
(``server.min_body_rate``, :func:`read_body`). The accounting is a few
additions per chunk and one dictionary entry per client address with a body in flight.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from aiohttp import web

from hookline.errors import BodyBudgetError, BodyTooLargeError

#: Why :meth:`BodyReservation.take` refused: the whole budget is taken.
FULL = "over-budget"
#: Why :meth:`BodyReservation.take` refused: the client address has its whole share.
CLIENT_FULL = "client-over-share"


class BodyBudget:
    """Bytes of request bodies held at once, up to ``limit`` in all and ``per_client`` for
    the bodies from any one client address."""

    __slots__ = ("clients", "limit", "per_client", "used")

    def __init__(self, limit: int, per_client: int | None = None) -> None:
        self.limit = limit
        self.per_client = limit if per_client is None else per_client
        self.used = 0
        #: Bytes held by each client address that holds any.
        self.clients: dict[str, int] = {}

    def hold(self, client: str) -> BodyReservation:
        """A reservation for one request from ``client``, released when its ``with`` ends."""
        return BodyReservation(self, client)


class BodyReservation:
    """What one request holds of a :class:`BodyBudget`."""

    __slots__ = ("_budget", "client", "held")

    def __init__(self, budget: BodyBudget, client: str) -> None:
        self._budget = budget
        self.client = client
        self.held = 0

    def take(self, size: int) -> str | None:
        """Reserve ``size`` more bytes; ``None`` when done, else why not (nothing reserved):
        :data:`FULL` or :data:`CLIENT_FULL`."""
        budget = self._budget
        used = budget.used + size
        if used > budget.limit:
            return FULL
        clients = budget.clients
        mine = clients.get(self.client, 0) + size
        if mine > budget.per_client:
            return CLIENT_FULL
        budget.used = used
        clients[self.client] = mine
        self.held += size
        return None

    def __enter__(self) -> BodyReservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held = self.held
        if not held:
            return
        budget = self._budget
        budget.used -= held
        left = budget.clients[self.client] - held
        if left:
            budget.clients[self.client] = left
        else:
            del budget.clients[self.client]
        self.held = 0


#: Seconds a body may take before ``server.min_body_rate`` applies: a client gets
#: this long to start, and each byte it sends buys it ``1 / min_body_rate`` more.
BODY_GRACE = 1.0


async def read_body(
    request: web.Request, limit: int, held: BodyReservation, within: float, min_rate: int
) -> bytes:
    """Read at most ``limit`` bytes, each reserved in ``held`` as it arrives.

    A declared length is checked against ``limit`` but never reserved ahead: only bytes
    received count. Stops reading as soon as the body is larger than ``limit``, the
    budget (or the client's share of it) cannot take it, ``within`` seconds have passed, or the
    body arrives slower than ``min_rate`` bytes a second after :data:`BODY_GRACE`.

    Raises:
        BodyTooLargeError, BodyBudgetError, TimeoutError.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLargeError
    content = request.content
    if length is not None and content.is_eof():  # the usual webhook: it came with the headers
        body = content.read_nowait()
        if refused := held.take(len(body)):
            raise BodyBudgetError(refused)
        return body
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    cap = started + within
    async with asyncio.timeout_at(min(cap, started + BODY_GRACE)) as deadline:
        async for chunk in content.iter_any():
            size += len(chunk)
            if size > limit:
                raise BodyTooLargeError
            if refused := held.take(len(chunk)):
                raise BodyBudgetError(refused)
            chunks.append(chunk)
            # The body must keep up with min_rate on average since it started.
            deadline.reschedule(min(cap, started + BODY_GRACE + size / min_rate))
    return b"".join(chunks)
