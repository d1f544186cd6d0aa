"""The receiver's Prometheus metrics: requests answered, commit round trips, bodies held.

The shared parts (label bounds, buckets, the metrics server) are in :mod:`hookline.metrics`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from hookline.metrics import FAST_BUCKETS

#: Label value for a request to a source that is not configured.
UNKNOWN_SOURCE = "_unknown"


class ReceiverMetrics:
    """What the receiver counts.

    Answers are counted in a plain dictionary on the request path and turned into
    counters when scraped (:class:`_AnswerCollector`): a prometheus-client counter takes
    a lock per increment, and the receiver answers thousands of requests a second on
    one thread. Only the event loop writes the counts; a scrape copies them first.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        #: Requests answered, by (source label, status, outcome).
        self.answers: dict[tuple[str, int, object], int] = {}
        registry.register(_AnswerCollector(self.answers))
        self.enqueue_seconds = Histogram(
            "hookline_enqueue_duration_seconds",
            "Round trip of each group commit to Redis: one observation per batch of events.",
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        #: Requests being handled; a plain number the gauge reads at scrape time, since
        #: a Gauge's locked inc/dec on every request costs more than it tells.
        self.in_flight = 0
        Gauge(
            "hookline_http_requests_in_flight",
            "Webhook requests being handled.",
            registry=registry,
        ).set_function(lambda: self.in_flight)
        #: Read at scrape time from the receiver's body budget (``server.max_buffered``).
        self.buffered_bytes = Gauge(
            "hookline_http_buffered_bytes",
            "Request body bytes the receiver holds, bounded by server.max_buffered.",
            registry=registry,
        )

    def answered(self, source: str, status: int, outcome: object) -> None:
        """Count one answered request."""
        key = (source, status, outcome)
        answers = self.answers
        answers[key] = answers.get(key, 0) + 1


#: Outcomes counted as signature failures, by the reason label they get.
_SIGNATURE_FAILURES = {"stale": "timestamp", "bad-signature": "signature", "replayed": "replay"}
#: Outcomes counted as refusals before verification, by the reason label they get.
_REFUSALS = {
    "address-refused": "address",
    "over-budget": "budget",
    "client-over-share": "client-share",
    "body-timeout": "slow-body",
}


class _AnswerCollector(Collector):
    """Request, signature-failure and duplicate counters, from the receiver's counts."""

    def __init__(self, answers: dict[tuple[str, int, object], int]) -> None:
        self._answers = answers

    def describe(self) -> Iterable[CounterMetricFamily]:
        """The families without samples: lets the registry filter scrapes by name and
        refuse a second metric of the same name."""
        return self._families()

    def collect(self) -> Iterable[CounterMetricFamily]:
        requests, failures, duplicates, refusals, replays = self._families()
        by_status: collections.Counter[tuple[str, str]] = collections.Counter()
        by_reason: collections.Counter[tuple[str, str]] = collections.Counter()
        refused: collections.Counter[tuple[str, str]] = collections.Counter()
        by_source: collections.Counter[str] = collections.Counter()
        replayed: collections.Counter[str] = collections.Counter()
        for (source, status, outcome), count in dict(self._answers).items():  # a copy: atomic
            by_status[source, str(status)] += count
            if not isinstance(outcome, str):
                continue
            if outcome in _SIGNATURE_FAILURES:
                by_reason[source, _SIGNATURE_FAILURES[outcome]] += count
            elif outcome in _REFUSALS:
                refused[source, _REFUSALS[outcome]] += count
            elif outcome == "duplicate":
                by_source[source] += count
            elif outcome == "replay":
                replayed[source] += count
        for labels, count in sorted(by_status.items()):
            requests.add_metric(labels, count)
        for labels, count in sorted(by_reason.items()):
            failures.add_metric(labels, count)
        for source, count in sorted(by_source.items()):
            duplicates.add_metric([source], count)
        for labels, count in sorted(refused.items()):
            refusals.add_metric(labels, count)
        for source, count in sorted(replayed.items()):
            replays.add_metric([source], count)
        return [requests, failures, duplicates, refusals, replays]

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, ...]:
        return (
            CounterMetricFamily(
                "hookline_http_requests",
                "Webhook requests answered, by source and status.",
                labels=["source", "status"],
            ),
            CounterMetricFamily(
                "hookline_signature_failures",
                "Requests refused for a bad signature or a timestamp outside tolerance.",
                labels=["source", "reason"],
            ),
            CounterMetricFamily(
                "hookline_duplicates",
                "Deliveries of an event already accepted, by source.",
                labels=["source"],
            ),
            CounterMetricFamily(
                "hookline_refused_requests",
                "Requests refused before their signature was checked: an address not allowed "
                "(403), the body budget or the client's share of it full (503), a body too "
                "slow (408).",
                labels=["source", "reason"],
            ),
            CounterMetricFamily(
                "hookline_replays",
                "Verified requests whose signed body was already accepted under another "
                "event id (the replay guard), answered as duplicates.",
                labels=["source"],
            ),
        )
