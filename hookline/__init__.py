"""hookline: authenticated webhook intake into Redis, processed by RQ-compatible workers.

What a handler module needs is importable from here::

    from hookline import Event, PermanentError, on

    @on("stripe", "invoice.paid")
    def invoice_paid(event: Event) -> None:
        ...

The pipeline, in the order an event travels: :mod:`hookline.ingest` (the HTTP edge:
request, verify, envelope), :mod:`hookline.redis` (keys, scripts, the job format, the
commit), :mod:`hookline.workers` (claim, handler, done / retry / dead letter),
:mod:`hookline.dlq` (dead letters), and the operator surfaces :mod:`hookline.cli` and
:mod:`hookline.console`; :mod:`hookline.config` is the typed configuration they share.
"""

from hookline.errors import PermanentError
from hookline.workers.handlers import ANY, Event, on

__version__ = "0.1.0"

__all__ = ["ANY", "Event", "PermanentError", "__version__", "on"]
