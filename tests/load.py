"""A steady stream of signed deliveries, some of them duplicates, sent from a thread.

The load is open-loop: a delivery leaves every ``1 / rate`` seconds whether or not the
earlier ones were answered (as providers send), up to ``max_in_flight`` at once. Every
delivery is recorded with what came back: a status, or the error that took its place.
With ``redelivery`` delays, an event that got no answer or a 5xx is sent again after
each delay, to another receiver where there are several, as a provider retries through a
load balancer; each attempt is a delivery of its own.
"""

from __future__ import annotations

import asyncio
import http.client
import random
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
import orjson

from tests.cluster import SECRET, SIGNATURE_HEADER
from tests.helpers import signed

#: What a delivery got instead of an answer.
REFUSED = "refused"  # the connection was not accepted (nothing listening)
DISCONNECTED = "disconnected"  # the connection was closed before an answer
TIMEOUT = "timeout"  # no answer within the client's time limit


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request sent and what became of it."""

    event_id: str
    duplicate: bool
    url: str
    sent: float
    done: float
    status: int | None
    error: str | None
    #: 0 for the first attempt; n for the n-th redelivery of an unacknowledged event.
    redelivery: int = 0

    @property
    def acknowledged(self) -> bool:
        """The receiver answered 2xx: it promised the event is stored."""
        return self.status is not None and 200 <= self.status < 300


def body_for(event_id: str, **spec: object) -> bytes:
    """The JSON body of a ``test`` event; ``spec`` tells the ledger handler what to do."""
    return orjson.dumps({"id": event_id, "type": "fault.test", **spec})


def headers_for(body: bytes) -> dict[str, str]:
    """The headers a provider signing with the ``test`` source's secret would send."""
    return {
        "Content-Type": "application/json",
        **signed("hmac", SECRET, body, header=SIGNATURE_HEADER),
    }


def deliver(url: str, body: bytes, timeout: float = 10.0) -> int:
    """POST one signed event and return the status (blocking)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("POST", parts.path, body=body, headers=headers_for(body))
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class SteadyLoad:
    """Signed deliveries at ``rate`` per second to the URLs ``targets()`` names.

    Args:
        targets: called for each delivery; returns the receiver URLs to pick from.
        rate: deliveries per second.
        duplicate_ratio: share of deliveries that resend an earlier event, same body.
        fail_ratio: share of events whose handler fails the first attempt.
        dead_ratio: share of events whose handler always fails (they end dead-lettered).
        seed: the random seed, for a reproducible mix.
        redelivery: seconds to wait before each redelivery of an event that got no
            answer or a 5xx (empty: none).
    """

    def __init__(
        self,
        targets: Callable[[], Sequence[str]],
        *,
        rate: float,
        duplicate_ratio: float = 0.10,
        fail_ratio: float = 0.05,
        dead_ratio: float = 0.0,
        seed: int = 1,
        timeout: float = 20.0,
        max_in_flight: int = 256,
        redelivery: Sequence[float] = (),
    ) -> None:
        self.targets = targets
        self.rate = rate
        self.duplicate_ratio = duplicate_ratio
        self.fail_ratio = fail_ratio
        self.dead_ratio = dead_ratio
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.redelivery = tuple(redelivery)
        self.rng = random.Random(seed)
        self.deliveries: list[Delivery] = []
        self.bodies: dict[str, bytes] = {}
        self.skipped = 0  # ticks dropped because max_in_flight deliveries were waiting
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="steady-load", daemon=True)
        self._error: BaseException | None = None

    # -- control ---------------------------------------------------------------------

    def start(self) -> None:
        """Start sending."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sending and wait for every delivery in flight to finish.

        Raises:
            RuntimeError: when the sending thread failed (the cause is chained).
        """
        self._stop.set()
        self._thread.join(timeout=self.timeout + 10)
        if self._error is not None:
            raise RuntimeError("the load generator failed") from self._error

    def acknowledged_since(self, since: float) -> int:
        """Deliveries sent after ``since`` that got a 2xx so far."""
        return sum(1 for d in list(self.deliveries) if d.sent >= since and d.acknowledged)

    def outcomes(self) -> Counter[str]:
        """Deliveries by status code or error name."""
        return Counter(str(d.status or d.error) for d in self.deliveries)

    # -- sending ---------------------------------------------------------------------

    def _next_event(self) -> tuple[str, bool]:
        if self.bodies and self.rng.random() < self.duplicate_ratio:
            return self.rng.choice(list(self.bodies)), True
        event_id = f"evt_{uuid.uuid4().hex}"
        draw = self.rng.random()
        fail_times = (
            99 if draw < self.dead_ratio else 1 if draw < self.dead_ratio + self.fail_ratio else 0
        )
        self.bodies[event_id] = body_for(event_id, fail_times=fail_times)
        return event_id, False

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # handed to stop(), in the test's thread
            self._error = exc

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.max_in_flight)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        in_flight: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            interval = 1.0 / self.rate
            next_at = time.monotonic()
            while not self._stop.is_set():
                if len(in_flight) >= self.max_in_flight:
                    self.skipped += 1
                else:
                    event_id, duplicate = self._next_event()
                    url = self.rng.choice(list(self.targets()))
                    task = asyncio.create_task(self._send(session, url, event_id, duplicate))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if in_flight:
                await asyncio.gather(*in_flight)

    async def _send(
        self, session: aiohttp.ClientSession, url: str, event_id: str, duplicate: bool
    ) -> None:
        delivery = await self._post(session, url, event_id, duplicate, 0)
        for attempt, delay in enumerate(self.redelivery, start=1):
            if delivery.acknowledged or (delivery.status is not None and delivery.status < 500):
                return
            await asyncio.sleep(delay)
            others = [u for u in self.targets() if u != delivery.url] or [delivery.url]
            url = self.rng.choice(others)
            delivery = await self._post(session, url, event_id, duplicate, attempt)

    async def _post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        event_id: str,
        duplicate: bool,
        redelivery: int,
    ) -> Delivery:
        body = self.bodies[event_id]
        sent = time.time()
        status: int | None = None
        error: str | None = None
        try:
            async with session.post(url, data=body, headers=headers_for(body)) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientConnectorError:
            error = REFUSED
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            error = DISCONNECTED
        except TimeoutError:
            error = TIMEOUT
        except aiohttp.ClientError as exc:
            error = f"{DISCONNECTED}:{type(exc).__name__}"
        delivery = Delivery(event_id, duplicate, url, sent, time.time(), status, error, redelivery)
        self.deliveries.append(delivery)
        return delivery
