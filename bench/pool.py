"""Pre-signed Stripe events for wrk, which cannot compute an HMAC itself.

Every request carries a distinct event id, so none is a duplicate. The bodies differ
only by that id, so the pool on disk is one body template (``head.bin`` + id +
``tail.bin``) and, per wrk thread, one line per request: ``<event id> <Stripe-Signature>``.
``pool.lua`` rebuilds each body byte for byte and sends it with its signature.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hookline.ingest.schemes import get_scheme

#: The signing secret of the benchmark's Stripe source (a throwaway, not a real one).
SECRET = "whsec_hookline_bench_only"
#: Where the event id goes in a template.
ID_MARK = "@EVENT_ID@"


def _stripe_event(size: int) -> bytes:
    """A realistic ``invoice.paid`` event, padded to ``size`` bytes, with an id placeholder."""
    now = int(time.time())
    invoice: dict[str, Any] = {
        "id": "in_1PbenchHooklineInvoice0001",
        "object": "invoice",
        "account_country": "FR",
        "account_name": "Acme SAS",
        "amount_due": 4200,
        "amount_paid": 4200,
        "amount_remaining": 0,
        "attempt_count": 1,
        "attempted": True,
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "currency": "eur",
        "customer": "cus_QbenchHookline01",
        "customer_email": "jenny.rosen@example.com",
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1Pbench/test_YWNjdF8xUGJlbmNo",
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": "il_1PbenchHooklineLine0001",
                    "object": "line_item",
                    "amount": 4200,
                    "currency": "eur",
                    # Non-ASCII, as in Stripe's own descriptions.
                    "description": "1 \u00d7 Pro plan (at \u20ac42.00 / month)",
                    "period": {"start": now - 30 * 86400, "end": now},
                    "price": {
                        "id": "price_1PbenchHooklinePro",
                        "object": "price",
                        "unit_amount": 4200,
                        "recurring": {"interval": "month", "interval_count": 1},
                    },
                    "quantity": 1,
                }
            ],
            "has_more": False,
            "total_count": 1,
        },
        "metadata": {"note": ""},
        "number": "ACME-0042",
        "paid": True,
        "status": "paid",
        "subtotal": 4200,
        "total": 4200,
    }
    event: dict[str, Any] = {
        "id": ID_MARK,
        "object": "event",
        "api_version": "2024-06-20",
        "created": now,
        "data": {"object": invoice},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "invoice.paid",
    }
    padding = size - len(orjson.dumps(event))
    invoice["metadata"]["note"] = "x" * max(0, padding)
    return orjson.dumps(event)


@dataclass(frozen=True, slots=True)
class Pool:
    """A pool written to ``directory``: ``per_thread`` requests for each of ``threads``."""

    directory: Path
    threads: int
    per_thread: int
    body_size: int

    @property
    def size(self) -> int:
        """Requests in the pool, all threads together."""
        return self.threads * self.per_thread


def pool_size(duration: float, max_rate: float, threads: int) -> int:
    """Requests each thread needs to sustain ``max_rate`` (all threads) for ``duration``."""
    return math.ceil(duration * max_rate / threads)


def write_pool(
    directory: Path, *, tag: str, threads: int, per_thread: int, body_size: int = 1500
) -> Pool:
    """Sign ``threads * per_thread`` distinct events, ids starting ``evt_{tag}``, now.

    Args:
        directory: created if needed; receives ``head.bin``, ``tail.bin``, ``thread-N.txt``.
        tag: distinguishes this pool's ids from another's (warm-up and measured run).
        threads: wrk threads; each reads its own file, so no two send the same id.
        per_thread: requests in each thread's file.
        body_size: approximate body size in bytes.
    """
    scheme = get_scheme("stripe")
    key = scheme.key(SECRET)

    def stripe_line(event_id: str, body: bytes, timestamp: int) -> str:
        signature = scheme.sign(body, key, timestamp=timestamp, msg_id=event_id)
        return signature[scheme.signature_header]

    return write_lines(
        directory,
        _stripe_event(body_size),
        stripe_line,
        tag=tag,
        threads=threads,
        per_thread=per_thread,
    )


#: What follows the event id on a pool line, for an event's id, body and timestamp.
LineSigner = Callable[[str, bytes, int], str]


def write_lines(
    directory: Path, template: bytes, sign: LineSigner, *, tag: str, threads: int, per_thread: int
) -> Pool:
    """Write a pool of ``template`` (holding :data:`ID_MARK`) with ids ``evt_{tag}…``,
    each line ``<event id> <what sign returns>`` (see pool.lua)."""
    directory.mkdir(parents=True, exist_ok=True)
    head, tail = template.split(ID_MARK.encode())
    (directory / "head.bin").write_bytes(head)
    (directory / "tail.bin").write_bytes(tail)
    timestamp = int(time.time())
    size = 0
    for thread in range(1, threads + 1):
        lines = []
        for n in range(per_thread):
            event_id = f"evt_{tag}{thread}x{n:08d}"
            body = head + event_id.encode() + tail
            size = len(body)
            lines.append(f"{event_id} {sign(event_id, body, timestamp)}\n")
        (directory / f"thread-{thread}.txt").write_text("".join(lines), encoding="ascii")
    return Pool(directory, threads, per_thread, size)
