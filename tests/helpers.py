"""Small helpers shared by tests: signing requests and reading what Redis holds."""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import orjson
import redis

from hookline.envelope import Envelope
from hookline.ingest.schemes import get_scheme
from hookline.redis import keys


def signed(
    scheme: str,
    secret: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    msg_id: str | None = None,
    **options: Any,
) -> dict[str, str]:
    """Headers a provider using ``scheme`` would send for ``body``."""
    impl = get_scheme(scheme, **options)
    return impl.sign(
        body,
        impl.key(secret),
        timestamp=timestamp or int(time.time()),
        msg_id=msg_id or f"msg_{uuid.uuid4().hex}",
    )


def stripe_event(
    event_id: str | None = None, event_type: str = "invoice.paid", size: int = 0
) -> bytes:
    """A Stripe-shaped event body, padded to about ``size`` bytes."""
    body: dict[str, Any] = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "data": {"object": {"id": "in_123", "amount_paid": 4200}},
    }
    if size:
        body["data"]["object"]["padding"] = "x" * max(0, size - len(orjson.dumps(body)))
    return orjson.dumps(body)


def queued_envelopes(client: redis.Redis, queue: str = "hookline") -> list[Envelope]:
    """Every envelope carried by the jobs waiting in ``queue``, in order."""
    found: list[Envelope] = []
    job_ids = cast(list[bytes], client.lrange(keys.rq_queue(queue), 0, -1))
    for job_id in job_ids:
        data = client.hget(keys.rq_job(job_id.decode()), "data")
        assert data is not None, "a queued job id without its job hash"
        _func, _instance, args, _kwargs = orjson.loads(data)
        found.extend(Envelope.from_dict(item) for item in args[0])
    return found
