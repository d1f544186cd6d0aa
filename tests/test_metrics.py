"""Prometheus metrics from the receiver and from the worker fleet."""

from __future__ import annotations

import contextlib
import re
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hookline.ingest.app import METRICS
from hookline.ingest.metrics import ReceiverMetrics
from hookline.metrics import RedisStateCollector, WorkerMetrics
from hookline.redis.embedded import EmbeddedRedis, free_port
from tests.conftest import STRIPE_SECRET
from tests.helpers import signed, stripe_event
from tests.worker_support import (
    effects,
    enqueue,
    envelope,
    processes,
    wait_for,
    worker_settings,
    write_config,
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse exposition text into {(sample name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class TestReceiverMetrics:
    async def test_requests_failures_and_duplicates_are_counted(
        self, client: TestClient[Any, Any]
    ) -> None:
        """Statuses, signature failures and duplicates are counted with bounded labels."""
        body = stripe_event("evt_metric_secret_id")
        headers = signed("stripe", STRIPE_SECRET, body)
        assert (await client.post("/hooks/stripe", data=body, headers=headers)).status == 202
        assert (await client.post("/hooks/stripe", data=body, headers=headers)).status == 200
        bad = signed("stripe", "whsec_wrong", body)
        assert (await client.post("/hooks/stripe", data=body, headers=bad)).status == 401
        assert (await client.post("/hooks/no-such-source", data=b"{}")).status == 404
        text = generate_latest(client.app[METRICS].registry).decode()
        found = samples(text)
        req = "hookline_http_requests_total"
        assert found[(req, (("source", "stripe"), ("status", "202")))] == 1
        assert found[(req, (("source", "stripe"), ("status", "200")))] == 1
        assert found[(req, (("source", "stripe"), ("status", "401")))] == 1
        assert found[(req, (("source", "_unknown"), ("status", "404")))] == 1
        sig = "hookline_signature_failures_total"
        assert found[(sig, (("reason", "signature"), ("source", "stripe")))] == 1
        assert found[("hookline_duplicates_total", (("source", "stripe"),))] == 1
        assert found[("hookline_enqueue_duration_seconds_count", ())] == 2
        assert found[("hookline_http_requests_in_flight", ())] == 0
        assert "evt_metric_secret_id" not in text
        assert "no-such-source" not in text
        # A scrape asking for one metric by name (?name[]=...) still finds it.
        registry = client.app[METRICS].registry
        only = generate_latest(registry.restricted_registry([req])).decode()
        assert 'hookline_http_requests_total{source="stripe",status="202"} 1.0' in only
        assert "hookline_duplicates_total" not in only


class TestWorkerMetrics:
    def test_fleet_metrics_sum_processes_and_read_queue_state(
        self, private_redis: EmbeddedRedis, tmp_path: Path
    ) -> None:
        """Two worker processes' counts are summed; queue and dead-letter gauges come from Redis."""
        url = private_redis.url
        r = redis.Redis.from_url(url)
        port = free_port()
        config = write_config(tmp_path / "w.toml", url)
        with config.open("a") as file:
            file.write(f'[metrics]\nhost = "127.0.0.1"\nworker_port = {port}\n')
        worker_settings(url)
        events = [envelope(f"m{i}") for i in range(20)]
        events += [envelope("flaky", fail_times=1), envelope("dead", permanent=True)]
        with contextlib.contextmanager(processes)(config, "--processes", "2"):
            for start in range(0, len(events), 2):
                enqueue(r, *events[start : start + 2])
            wait_for(lambda: len(effects(r)) == 21, what="the events to be handled")

            def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    return samples(resp.read().decode())

            def handled() -> float:
                return sum(
                    value
                    for (name, labels), value in scrape().items()
                    if name == "hookline_worker_events_total" and ("outcome", "handled") in labels
                )

            wait_for(lambda: handled() == 21, what="metrics to show 21 handled")
            found = scrape()
        events_total = "hookline_worker_events_total"
        key = (("outcome", "retried"), ("source", "test"), ("type", "thing"))
        assert found[(events_total, key)] == 1
        key = (("outcome", "dead_lettered"), ("source", "test"), ("type", "thing"))
        assert found[(events_total, key)] == 1
        assert found[("hookline_queue_depth", (("queue", "hookline"),))] == 0
        assert found[("hookline_dead_letters", (("source", "test"),))] == 1
        assert found[("hookline_event_lag_seconds_count", (("source", "test"),))] == 21
        lag_sum = found[("hookline_event_lag_seconds_sum", (("source", "test"),))]
        assert 0 < lag_sum < 21 * 30
        r.close()


class TestWorkerProbes:
    def test_readyz_is_ready_while_working_and_not_while_stopping(
        self, private_redis: EmbeddedRedis, tmp_path: Path
    ) -> None:
        """The fleet's /readyz is 200 while it works and 503 once SIGTERM starts the stop."""
        url = private_redis.url
        r = redis.Redis.from_url(url)
        port = free_port()
        config = write_config(tmp_path / "w.toml", url)
        with config.open("a") as file:
            file.write(f'[metrics]\nhost = "127.0.0.1"\nworker_port = {port}\n')
        worker_settings(url)

        def probe(path: str) -> int:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)
            except OSError:
                return 0

        with contextlib.contextmanager(processes)(config) as fleet:
            wait_for(lambda: probe("/readyz") == 200, what="the fleet to be ready")
            assert probe("/healthz") == 200
            enqueue(r, envelope("slow", sleep=2, started=True))
            wait_for(lambda: r.exists("test:started:slow"), what="the handler to start")
            fleet.signal(signal.SIGTERM)
            wait_for(lambda: probe("/readyz") == 503, timeout=5, what="not ready while stopping")
            assert fleet.proc.poll() is None, "still finishing the event in progress"
            assert fleet.wait(timeout=30) == 0
        assert effects(r) == {"slow": 1}
        r.close()


class TestReadmeAlerts:
    def test_alerts_rate_only_counters_and_name_real_metrics(self, r: redis.Redis) -> None:
        """Every metric the README's alert rules name exists, and `rate()`/`increase()` are
        applied to counters only (a gauge that drops reads as a counter reset)."""
        readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
        rules = "\n".join(re.findall(r"```promql\n(.*?)```", readme, re.DOTALL))
        assert rules, "the README shows its alert rules in a promql block"
        kinds: dict[str, str] = {}
        collectors: list[Any] = [
            CollectorRegistry(),
            RedisStateCollector(r, ["hookline"]),
        ]
        ReceiverMetrics(collectors[0])
        WorkerMetrics(collectors[0])
        for collector in collectors:
            for family in collector.collect():
                kinds[family.name] = family.type
        for name in re.findall(r"\bhookline_\w+", rules):
            base = re.sub(r"_(total|bucket|sum|count)$", "", name)
            assert base in kinds, f"{name} is not a metric hookline exports"
        for name in re.findall(r"\b(?:rate|irate|increase)\((hookline_\w+)", rules):
            assert name.endswith("_total") and kinds[name[: -len("_total")]] == "counter", name
