"""Prometheus metrics shared by both sides: label bounds, buckets, the worker metrics,
the collector that reads queue state from Redis, and the server that exposes them.
The receiver's own metrics are in :mod:`hookline.ingest.metrics`.

Metric objects live on a :class:`prometheus_client.CollectorRegistry` owned by the
receiver application or the worker process, never in module globals. Label values
are bounded: unknown sources share one value (the receiver's ``UNKNOWN_SOURCE``), and
event types beyond a cap per source are folded into ``_other`` (an event id is never a
label).

Worker processes use prometheus-client's multi-process mode: ``hookline work`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before any metric exists, each worker
writes its own file, and the supervisor serves their sum.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
import redis
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hookline.errors import ListenError
from hookline.redis import keys
from hookline.redis.connection import as_str
from hookline.redis.jobs import parse_rq_timestamp

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
                when = parse_rq_timestamp(as_str(created)) if created else None
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
    *,
    key: str,
) -> None:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread.

    With ``health`` (returning ready or not, and a word on why), the same server also
    answers ``GET /healthz`` (200 while the process runs) and ``GET /readyz``
    (200 when ready, else 503), for orchestrators' probes.

    Raises:
        ListenError: when the port is taken (the message names ``key``, the setting
            that chose it).
    """
    try:
        _serve_metrics(registry, host, port, health)
    except OSError as exc:
        raise ListenError.from_os_error(exc, host, port, key) from None


def _serve_metrics(
    registry: CollectorRegistry,
    host: str,
    port: int,
    health: Callable[[], tuple[bool, str]] | None,
) -> None:
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
