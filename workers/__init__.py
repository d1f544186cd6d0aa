"""The processing side: workers running idempotent handlers with retries and dead letters.

Handler modules import what they need from here::

    from workers import Event, PermanentError, on

    @on("stripe", "invoice.paid")
    def invoice_paid(event: Event) -> None:
        ...
"""

from hookline.errors import PermanentError
from workers.handlers import ANY, Event, on

__all__ = ["ANY", "Event", "PermanentError", "on"]
