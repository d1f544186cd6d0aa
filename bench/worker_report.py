"""The worker benchmark's results: summarised, tabulated, or as JSON.

Each worker configuration is drained several times, interleaved with the others, so
that a neighbour's burst of activity on the machine does not land on one side only.
A disturbance can only slow a run down, so each column keeps the best of the runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.worker_drain import Drain
from bench.worker_latency import Latency

#: hookline events/s per process, as a multiple of stock RQ's jobs/s, that the issue asks for.
TARGET_RATIO = 3.0


@dataclass(frozen=True, slots=True)
class Summary:
    """The best of one configuration's runs, column by column."""

    label: str
    runs: tuple[Drain, ...]

    @property
    def events_per_s(self) -> float:
        """The highest events/s of the runs."""
        return max(d.events_per_s for d in self.runs)

    @property
    def worker_us(self) -> float:
        """The fewest worker CPU microseconds per event of the runs (0: not measured)."""
        known = [d.per_event(d.worker_cpu) * 1e6 for d in self.runs if d.worker_cpu > 0]
        return min(known, default=0.0)

    @property
    def redis_us(self) -> float:
        """The fewest redis-server CPU microseconds per event of the runs (0: not measured)."""
        known = [d.per_event(d.redis_cpu) * 1e6 for d in self.runs if d.redis_cpu > 0]
        return min(known, default=0.0)

    @property
    def best(self) -> Drain:
        """The fastest run."""
        return max(self.runs, key=lambda d: d.events_per_s)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary, with every run."""
        return {
            "label": self.label,
            "best_events_per_s": round(self.events_per_s, 1),
            "best_worker_cpu_us_per_event": round(self.worker_us, 1),
            "best_redis_cpu_us_per_event": round(self.redis_us, 1),
            "runs": [d.as_dict() for d in self.runs],
        }


@dataclass(frozen=True, slots=True)
class Results:
    """The whole run: stock RQ, hookline at each batch size, and the latency run."""

    settings: dict[str, Any]
    stock: Summary
    hookline: tuple[Summary, ...]
    latency: tuple[Latency, ...]

    def ratios(self) -> dict[str, dict[str, float]]:
        """Per hookline configuration: events/s over stock's, and stock's CPU/event over its."""
        found = {}
        for h in self.hookline:
            wall = h.events_per_s / self.stock.events_per_s if self.stock.events_per_s else 0.0
            cpu = self.stock.worker_us / h.worker_us if h.worker_us else 0.0
            found[h.label] = {"events_per_s": round(wall, 2), "worker_cpu": round(cpu, 2)}
        return found

    def target_met(self) -> bool:
        """Whether every hookline configuration reaches :data:`TARGET_RATIO` in events/s."""
        return all(r["events_per_s"] >= TARGET_RATIO for r in self.ratios().values())

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready document."""
        return {
            "benchmark": "worker",
            "settings": self.settings,
            "stock": self.stock.as_dict(),
            "hookline": [h.as_dict() for h in self.hookline],
            "ratios_vs_stock": self.ratios(),
            "target_ratio": TARGET_RATIO,
            "latency": [lat.as_dict() for lat in self.latency],
        }


def _top_commands(drain: Drain, count: int = 7) -> str:
    ranked = sorted(drain.commands.items(), key=lambda kv: -kv[1])[:count]
    return ", ".join(f"{name} {drain.per_event(n):.2f}" for name, n in ranked)


def _latency_lines(lat: Latency, best: float) -> list[str]:
    w, p = lat.wrk, lat.to_handler
    return [
        f"(3) end to end: hookline serve + hookline work (1 process); wrk, open loop, "
        f"{lat.rate:,.0f} events/s ({lat.rate / best:.0%} of (2)'s best) for "
        f"{w.duration_s:.1f} s: {w.rps:,.0f} answered/s",
        f"    {w.answered_2xx:,} answered 2xx, {w.non_2xx} other, "
        f"{w.socket_errors + w.timeouts} errors, {lat.late:,} sent over 5 ms late",
        f"    {lat.handled:,} handled, in {lat.jobs:,} jobs ({lat.events_per_job:.2f} events/job);"
        f" deepest queue {lat.max_depth:,} jobs; all handled {lat.catch_up_s:.2f} s after wrk"
        " stopped",
        f"    {'':<40}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}",
        f"    {'receiver accepts -> handler starts':<40}"
        f"{p.p50_ms:>9.2f}{p.p99_ms:>9.2f}{p.max_ms:>9.2f}",
        f"    {'request sent -> 2xx received (wrk)':<40}"
        f"{w.p50_ms:>9.2f}{w.p99_ms:>9.2f}{w.max_ms:>9.2f}",
        "    CPU while loaded (CPUs busy, µs per event): "
        + ", ".join(
            f"{name} {lat.cpu.load(name):.2f} ({lat.cpu_us_per_event(name):.0f})"
            for name in lat.cpu.by
        ),
    ]


def table(results: Results) -> str:
    """A human-readable report."""
    s = results.settings
    load = ", ".join(f"{x:.2f}" for x in s["load_average_at_start"])
    lines = [
        f"worker benchmark: {s['events']:,} events of {s['body_bytes']} bytes per drain, "
        f"best of {s['repeat']} interleaved runs; one worker process; Redis appendfsync "
        f"everysec; {s['cpus']} CPUs (load average at start {load}); Python {s['python']}",
        "",
        f"{'':<4}{'worker':<36}{'events/s':>9}{'worker':>9}{'redis':>9}{'round':>9}{'redis':>9}"
        f"{'others':>8}",
        f"{'':<4}{'':<36}{'':>9}{'µs/ev':>9}{'µs/ev':>9}{'trips/ev':>9}{'cmds/ev':>9}{'CPUs':>8}",
    ]
    for key, summary in zip("1222", (results.stock, *results.hookline), strict=False):
        d = summary.best
        lines.append(
            f"({key}) {summary.label:<36}{summary.events_per_s:>9,.0f}{summary.worker_us:>9.0f}"
            f"{summary.redis_us:>9.0f}{d.per_event(d.reads):>9.2f}"
            f"{d.per_event(sum(d.commands.values())):>9.1f}{d.others_load:>8.2f}"
        )
    lines += [
        "    (events/s: best run; µs/ev: CPU time per event, least of the runs; others: CPUs",
        "     kept busy by other processes of the machine during the best run)",
        "",
    ]
    for label, ratio in results.ratios().items():
        met = "met" if ratio["events_per_s"] >= TARGET_RATIO else "NOT met"
        lines.append(
            f"hookline/stock, {label}: {ratio['events_per_s']:.2f}x events/s "
            f"(target >= {TARGET_RATIO:g}x: {met}); {ratio['worker_cpu']:.2f}x less worker CPU"
        )
    lines += ["", "Redis commands per event, most frequent (commands inside scripts included):"]
    lines += [
        f"  {summary.label}: {_top_commands(summary.best)}"
        for summary in (results.stock, *results.hookline)
    ]
    best = max(h.events_per_s for h in results.hookline)
    for lat in results.latency:
        lines += ["", *_latency_lines(lat, best)]
    return "\n".join(lines)
