"""Prometheus metrics: names, labels, and the collector that reads queue state from Redis.

Metric objects live on a :class:`prometheus_client.CollectorRegistry` owned by the
receiver application or the worker process, never in module globals. Label values
are bounded: unknown sources share one value, and event types beyond a cap per source
are folded into ``_other`` (an event id is never a label).

Worker processes use prometheus-client's multi-process mode: ``hookline work`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before any metric exists, each worker
writes its own file, and the supervisor serves their sum.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
import redis
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hookline.redis import keys
from hookline.redis.connection import as_str

#: Label value for a request to a source that is not configured.
UNKNOWN_SOURCE = "_unknown"
#: Label value for event types past :data:`MAX_TYPES_PER_SOURCE`.
OTHER_TYPE = "_other"
#: Distinct event types tracked per source before folding into ``_other``.
MAX_TYPES_PER_SOURCE = 200

#: Buckets for sub-second latencies (enqueue, handler).
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: Buckets for end-to-end lag, which includes retries.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)


class TypeLabels:
    """Caps the number of distinct ``type`` label values per source."""

    def __init__(self, limit: int = MAX_TYPES_PER_SOURCE) -> None:
        self._limit = limit
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, source: str, event_type: str) -> str:
        """The label value to use for ``event_type`` of ``source``."""
        with self._lock:
            seen = self._seen.setdefault(source, set())
            if event_type in seen:
                return event_type
            if len(seen) < self._limit:
                seen.add(event_type)
                return event_type
            return OTHER_TYPE


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
_SIGNATURE_FAILURES = {"stale": "timestamp", "bad-signature": "signature"}


class _AnswerCollector(Collector):
    """Request, signature-failure and duplicate counters, from the receiver's counts."""

    def __init__(self, answers: dict[tuple[str, int, object], int]) -> None:
        self._answers = answers

    def describe(self) -> Iterable[CounterMetricFamily]:
        """The families without samples: lets the registry filter scrapes by name and
        refuse a second metric of the same name."""
        return self._families()

    def collect(self) -> Iterable[CounterMetricFamily]:
        requests, failures, duplicates = self._families()
        by_status: collections.Counter[tuple[str, str]] = collections.Counter()
        by_reason: collections.Counter[tuple[str, str]] = collections.Counter()
        by_source: collections.Counter[str] = collections.Counter()
        for (source, status, outcome), count in dict(self._answers).items():  # a copy: atomic
            by_status[source, str(status)] += count
            if isinstance(outcome, str) and outcome in _SIGNATURE_FAILURES:
                by_reason[source, _SIGNATURE_FAILURES[outcome]] += count
            elif outcome == "duplicate":
                by_source[source] += count
        for labels, count in sorted(by_status.items()):
            requests.add_metric(labels, count)
        for labels, count in sorted(by_reason.items()):
            failures.add_metric(labels, count)
        for source, count in sorted(by_source.items()):
            duplicates.add_metric([source], count)
        return [requests, failures, duplicates]

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily, CounterMetricFamily]:
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
        )


class WorkerMetrics:
    """What workers count (in multi-process mode under ``hookline work``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.types = TypeLabels()
        self.events = Counter(
            "hookline_worker_events",
            "Events resolved by workers, by source, type and outcome "
            "(handled, retried, dead_lettered, ignored).",
            ["source", "type", "outcome"],
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "hookline_handler_duration_seconds",
            "Time successful handler calls took.",
            ["source", "type"],
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self.lag_seconds = Histogram(
            "hookline_event_lag_seconds",
            "Time from the receiver accepting an event to its handler succeeding.",
            ["source"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )


def _rq_time(value: str) -> float | None:
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


class RedisStateCollector(Collector):
    """Reads queue depths, oldest-job ages, retries and dead letters from Redis at scrape time."""

    def __init__(self, client: redis.Redis, queues: Sequence[str]) -> None:
        self.client = client
        self.queues = list(queues)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Produce the gauges (nothing if Redis cannot be reached)."""
        depth = GaugeMetricFamily(
            "hookline_queue_depth",
            "Jobs waiting in the queue (a job carries 1+ events).",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "hookline_queue_oldest_age_seconds",
            "Age of the oldest job waiting in the queue.",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "hookline_dead_letters",
            "Events in the dead-letter queue, by source.",
            labels=["source"],
        )
        retries = GaugeMetricFamily(
            "hookline_retries_scheduled", "Events waiting for their next attempt."
        )
        workers = GaugeMetricFamily("hookline_workers", "Registered worker processes.")
        try:
            now = time.time()
            with self.client.pipeline(transaction=False) as pipe:
                for queue in self.queues:
                    pipe.llen(keys.rq_queue(queue))
                    pipe.lindex(keys.rq_queue(queue), 0)
                pipe.hgetall(keys.dlq_counts("source"))
                pipe.zcard(keys.retries())
                pipe.scard(keys.workers())
                replies = pipe.execute()
            for index, queue in enumerate(self.queues):
                depth.add_metric([queue], float(replies[2 * index]))
                head = replies[2 * index + 1]
                created = (
                    self.client.hget(keys.rq_job(as_str(head)), "created_at") if head else None
                )
                when = _rq_time(as_str(created)) if created else None
                age.add_metric([queue], max(0.0, now - when) if when else 0.0)
            for source, count in replies[-3].items():
                dead.add_metric([as_str(source)], float(count))
            retries.add_metric([], float(replies[-2]))
            workers.add_metric([], float(replies[-1]))
        except redis.RedisError:
            return []
        return [depth, age, dead, retries, workers]


def serve_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int,
    health: Callable[[], tuple[bool, str]] | None = None,
) -> None:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread.

    With ``health`` (returning ready or not, and a word on why), the same server also
    answers ``GET /healthz`` (200 while the process runs) and ``GET /readyz``
    (200 when ready, else 503), for orchestrators' probes.
    """
    if health is None:
        start_http_server(port, addr=host, registry=registry)
        return
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"status":"alive"}']
        if path == "/readyz":
            ready, why = health()
            status = "200 OK" if ready else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [orjson.dumps({"status": why})]
        result: Iterable[bytes] = metrics_app(environ, start_response)
        return result

    server = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not worth a log line each."""
