"""Handlers: how business code registers for events, and how workers find them.

A handler is a function decorated with :func:`on`. The decorator only marks the
function; there is no global registry. The worker imports the modules named in
``[workers] handlers`` and collects the marked functions into a :class:`Router`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import orjson

from hookline.envelope import Envelope
from hookline.errors import HandlerLoadError

#: Matches any event type of a source.
ANY = "*"
_MARK = "__hookline_routes__"


@dataclass(frozen=True, slots=True)
class Event:
    """What a handler receives.

    Attributes:
        source: the configured source that received it.
        id: the provider's event id.
        type: the provider's event type.
        received_at: unix time at which the receiver accepted it.
        headers: the stored request headers (lower-case names).
        body: the raw request body.
        attempt: 1 on the first attempt, 2 on the first retry, and so on.
    """

    source: str
    id: str
    type: str
    received_at: float
    headers: dict[str, str]
    body: bytes
    attempt: int
    _json: list[Any] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Event:
        """The event an envelope describes, on its next attempt."""
        return cls(
            source=envelope.source,
            id=envelope.id,
            type=envelope.type,
            received_at=envelope.received_at,
            headers=envelope.headers,
            body=envelope.body,
            attempt=len(envelope.attempts) + 1,
        )

    def json(self) -> Any:
        """The body parsed as JSON, parsed once (raises ``orjson.JSONDecodeError``)."""
        if not self._json:
            self._json.append(orjson.loads(self.body))
        return self._json[0]


Handler = Callable[[Event], object]


def on(source: str, event_type: str = ANY) -> Callable[[Handler], Handler]:
    """Mark a function as the handler of ``source``'s events of ``event_type``.

    ``event_type`` defaults to ``"*"``: any type of the source; ``source`` may be
    ``"*"`` too (any source). The most specific route wins. A function may be
    decorated several times. The handler must be idempotent: see the README.
    """

    def mark(func: Handler) -> Handler:
        routes: list[tuple[str, str]] = getattr(func, _MARK, [])
        routes.append((source, event_type))
        setattr(func, _MARK, routes)
        return func

    return mark


class Router:
    """Maps (source, type) to handlers: exact, then wildcard type, then wildcard source."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {}

    def add(self, source: str, event_type: str, handler: Handler) -> None:
        """Route ``source``/``event_type`` to ``handler``.

        Raises:
            HandlerLoadError: when another handler already has that route.
        """
        existing = self._routes.get((source, event_type))
        if existing is not None and existing is not handler:
            raise HandlerLoadError(
                f"two handlers for {source}/{event_type}: "
                f"{_name(existing)} and {_name(handler)}; keep one"
            )
        self._routes[(source, event_type)] = handler

    def find(self, source: str, event_type: str) -> Handler | None:
        """The handler for an event, or ``None``."""
        routes = self._routes
        return (
            routes.get((source, event_type))
            or routes.get((source, ANY))
            or routes.get((ANY, event_type))
            or routes.get((ANY, ANY))
        )

    def __len__(self) -> int:
        return len(self._routes)

    def routes(self) -> list[tuple[str, str, str]]:
        """Every route as (source, type, handler name), sorted."""
        return sorted((s, t, _name(h)) for (s, t), h in self._routes.items())

    def include(self, module: ModuleType) -> int:
        """Add every marked function of ``module``; return how many routes were added."""
        added = 0
        for _, member in inspect.getmembers(module, callable):
            for source, event_type in getattr(member, _MARK, ()):
                self.add(source, event_type, member)
                added += 1
        return added


def _name(handler: Handler) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', handler)}"


def load_router(modules: Iterable[str]) -> Router:
    """Import the handler modules and route their marked functions.

    Raises:
        HandlerLoadError: when a module cannot be imported or registers nothing.
    """
    router = Router()
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # report any import-time failure with the module's name
            raise HandlerLoadError(f"workers.handlers: cannot import {name!r}: {exc!r}") from exc
        if router.include(module) == 0:
            raise HandlerLoadError(
                f"workers.handlers: module {name!r} has no function decorated with @on(...)"
            )
    return router
