"""The function every hookline RQ job names, so that a stock ``rq worker`` can run it.

``rq worker -S json`` (with ``HOOKLINE_CONFIG`` set) runs hookline jobs with the same
idempotency, retry and dead-letter semantics as ``hookline work``, minus the handler
time limit (RQ's own job timeout applies) and minus the fast requeue of a killed
worker's jobs (RQ's abandoned-job handling applies). ``hookline work`` is faster.
"""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from hookline.config.settings import load_settings
from hookline.envelope import Envelope
from hookline.workers.handlers import load_router
from hookline.workers.runner import Processor


def process(envelopes: list[dict[str, Any]]) -> dict[str, int]:
    """Resolve the events of one job; returns counts by outcome."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("hookline.workers.jobs.process runs inside an RQ worker")
    settings = load_settings()
    router = load_router(settings.workers.handlers)
    processor = Processor(
        job.connection, settings, router, f"rq:{job.worker_name or '?'}", use_alarm=False
    )
    result = processor.run_job([Envelope.from_dict(item) for item in envelopes])
    return {
        "handled": result.handled,
        "skipped": result.skipped,
        "retried": result.retried,
        "dead": result.dead,
        "ignored": result.ignored,
    }
