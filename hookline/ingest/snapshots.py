"""The metrics of several receiver processes, summed into one ``/metrics``.

Each process of ``hookline serve --processes N`` keeps counting as one process does (a
plain dictionary on the request path, nothing shared, no lock) and writes what its
registry holds to a file of its own once a second and at exit (:class:`SnapshotWriter`).
The supervisor serves the sum of those files (:class:`SummedCollector`): counters and
histograms of every process that ever ran (a process that died keeps its last counts,
so a counter never goes back), gauges of the processes alive. A process killed with
SIGKILL loses at most its last second of counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

#: Seconds between two snapshots of a receiver process's metrics.
SNAPSHOT_INTERVAL = 1.0
#: The metric that says how many requests each process slot answered.
PROCESS_REQUESTS = "hookline_receiver_process_requests"

#: A family as stored: name, type, help, then samples of (name, labels, value).
_Family = tuple[str, str, str, list[tuple[str, dict[str, str], float]]]


def _snapshot(registry: CollectorRegistry) -> bytes:
    families = [
        (
            family.name,
            family.type,
            family.documentation,
            [
                (s.name, s.labels, s.value)
                for s in family.samples
                if not s.name.endswith("_created")  # a time, not a count: never summed
            ],
        )
        for family in registry.collect()
    ]
    return orjson.dumps(families)


def snapshot_path(directory: Path, slot: int, pid: int) -> Path:
    """The file the receiver process ``pid`` of ``slot`` writes its metrics to."""
    return directory / f"{slot}-{pid}.json"


class SnapshotWriter:
    """Writes a receiver process's metrics to its file, every second and once at exit."""

    def __init__(self, registry: CollectorRegistry, path: Path) -> None:
        self.registry = registry
        self.path = path
        self._task: asyncio.Task[None] | None = None

    def write(self) -> None:
        """Write the metrics now (whole: a reader never sees half a file)."""
        partial = self.path.with_suffix(".part")
        partial.write_bytes(_snapshot(self.registry))
        os.replace(partial, self.path)

    async def _every_second(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL)
            self.write()

    def attach(self, app: web.Application) -> None:
        """Write while ``app`` runs, and a last time after its cleanup (every request
        answered, every pending event committed)."""

        async def start(app: web.Application) -> None:
            self.write()
            self._task = asyncio.create_task(self._every_second())

        async def stop(app: web.Application) -> None:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self.write()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)


def _read(path: Path) -> list[_Family]:
    try:
        families: list[_Family] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):  # gone (reaped) or not yet written
        return []
    return families


def _key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


class SummedCollector(Collector):
    """The sum of the snapshots in ``directory``, plus requests answered per slot."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: Families seen so far, by name: (type, help), in the order first seen.
        self._families: dict[str, tuple[str, str]] = {}
        #: Counter and histogram samples of processes that have exited, summed.
        self._retired: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._retired_requests: dict[str, float] = {}

    def retire(self, slot: int, pid: int) -> None:
        """Fold the last snapshot of an exited process into the totals kept, and delete
        its file (its gauges die with it)."""
        path = snapshot_path(self.directory, slot, pid)
        families = self._remember(_read(path))
        for _, kind, _, samples in families:
            if kind == "gauge":
                continue
            for sample, labels, value in samples:
                key = _key(sample, labels)
                self._retired[key] = self._retired.get(key, 0.0) + value
        requests = self._retired_requests
        requests[str(slot)] = requests.get(str(slot), 0.0) + _requests(families)
        path.unlink(missing_ok=True)

    def _remember(self, families: list[_Family]) -> list[_Family]:
        for name, kind, documentation, _ in families:
            self._families.setdefault(name, (kind, documentation))
        return families

    def _live(self) -> Iterator[tuple[str, list[_Family]]]:
        for path in sorted(self.directory.glob("*.json")):
            yield path.name.partition("-")[0], self._remember(_read(path))

    def collect(self) -> Iterable[Metric]:
        """Every family, each sample summed over the processes."""
        totals = dict(self._retired)
        per_slot = dict(self._retired_requests)
        for slot, families in self._live():
            per_slot[slot] = per_slot.get(slot, 0.0) + _requests(families)
            for _, _, _, samples in families:
                for sample, labels, value in samples:
                    key = _key(sample, labels)
                    totals[key] = totals.get(key, 0.0) + value
        by_family: dict[str, list[tuple[str, tuple[tuple[str, str], ...], float]]] = {}
        for (sample, label_pairs), value in totals.items():
            by_family.setdefault(_family_of(sample, self._families), []).append(
                (sample, label_pairs, value)
            )
        found: list[Metric] = []
        for name, (kind, documentation) in self._families.items():
            metric = Metric(name, documentation, kind)
            for sample, label_pairs, value in sorted(by_family.get(name, [])):
                metric.add_sample(sample, dict(label_pairs), value)
            found.append(metric)
        slots = CounterMetricFamily(
            PROCESS_REQUESTS,
            "Webhook requests answered by each receiver process slot (restarts included).",
            labels=["process"],
        )
        for slot, count in sorted(per_slot.items(), key=lambda item: int(item[0])):
            slots.add_metric([slot], count)
        found.append(slots)
        return found


def _family_of(sample: str, families: dict[str, tuple[str, str]]) -> str:
    if sample in families:
        return sample
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if sample.endswith(suffix) and sample[: -len(suffix)] in families:
            return sample[: -len(suffix)]
    return sample


def _requests(families: list[_Family]) -> float:
    """Requests one process answered, from its snapshot."""
    return sum(
        value
        for name, _, _, samples in families
        if name == "hookline_http_requests"
        for sample, _, value in samples
        if sample == "hookline_http_requests_total"
    )
