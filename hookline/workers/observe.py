"""The observer that turns worker outcomes into Prometheus metrics."""

from __future__ import annotations

import time

from hookline.metrics import WorkerMetrics
from hookline.workers.handlers import Event


class MetricsObserver:
    """Counts outcomes by source, type and outcome; times handlers and end-to-end lag."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def _type(self, event: Event) -> str:
        return self.metrics.types(event.source, event.type)

    def handled(self, event: Event, seconds: float) -> None:
        """Count a success, its handler time and the lag since the receiver accepted it."""
        kind = self._type(event)
        self.metrics.events.labels(event.source, kind, "handled").inc()
        self.metrics.handler_seconds.labels(event.source, kind).observe(seconds)
        self.metrics.lag_seconds.labels(event.source).observe(
            max(0.0, time.time() - event.received_at)
        )

    def retried(self, event: Event, error: BaseException) -> None:
        """Count a failed attempt that will be retried."""
        self.metrics.events.labels(event.source, self._type(event), "retried").inc()

    def dead(self, event: Event, reason: str) -> None:
        """Count a dead-lettered event."""
        self.metrics.events.labels(event.source, self._type(event), "dead_lettered").inc()

    def ignored(self, event: Event) -> None:
        """Count an event nobody handles."""
        self.metrics.events.labels(event.source, self._type(event), "ignored").inc()
