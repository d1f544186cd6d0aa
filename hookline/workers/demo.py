"""The demo handler ``hookline dev`` and the compose file run: it logs every event."""

from __future__ import annotations

import structlog

from hookline.workers.handlers import Event, on

log = structlog.get_logger("hookline.demo")


@on("*")
def log_event(event: Event) -> None:
    """Log the event; a real handler would call your business code here."""
    log.info(
        "demo handler got an event",
        source=event.source,
        event_id=event.id,
        event_type=event.type,
        attempt=event.attempt,
        bytes=len(event.body),
    )
