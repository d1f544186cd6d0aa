"""The peer benchmark's results: medians over rounds, ratios, the issue's targets, a table.

Ratios are taken within a round, between runs seconds apart, and reported as their
median over the rounds (a busy neighbour slows one round, not one system); every other
figure is a system's median over the rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from bench.peers.measure import Run
from bench.peers.systems import ASYNC_KIND, INCR_KIND, SYNC_KIND, System
from bench.worker_latency import Latency

#: What each handler kind is, for the table.
KIND_TITLES = {
    INCR_KIND: "(a) handler = one Redis INCR",
    SYNC_KIND: "(b-sync) handler = time.sleep(10 ms), then INCR (threads)",
    ASYNC_KIND: "(b-async) handler = asyncio.sleep(10 ms), then INCR (one event loop)",
}
#: The peer every (b) target compares with, and the ceiling 8 threads of 10 ms allow.
REFERENCE_PEER = "dramatiq"
SYNC_CEILING = 800.0
#: Cores kept busy by other processes during a run above which its figures are suspect.
NOISY = 0.3
#: A run shorter than this share of the seconds asked is listed.
SHORT = 0.8


@dataclass(frozen=True, slots=True)
class Target:
    """One of the issue's targets and whether this run met it."""

    name: str
    wanted: str
    measured: float | None
    threshold: float
    unit: str

    @property
    def met(self) -> bool | None:
        """``None`` when it could not be measured (a system missing from the run)."""
        return None if self.measured is None else self.measured >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        value = None if self.measured is None else round(self.measured, 3)
        return {"target": self.wanted, "measured": value, "unit": self.unit, "met": self.met}


@dataclass(frozen=True, slots=True)
class Results:
    """A whole run: the systems, the rounds of runs, the calibration, the lag run."""

    settings: dict[str, Any]
    systems: tuple[System, ...]
    rounds: tuple[tuple[Run, ...], ...]
    calibration: tuple[Run, ...]
    lag: Latency | None
    lag_note: str

    def runs_of(self, system: str, kind: str) -> list[Run]:
        """One pair's runs, round after round."""
        return [r for rnd in self.rounds for r in rnd if (r.system, r.kind) == (system, kind)]

    def pairs(self) -> list[tuple[str, str]]:
        """(system, kind) in the order of the first round."""
        return [(r.system, r.kind) for r in self.rounds[0]] if self.rounds else []

    def is_hookline(self, name: str) -> bool:
        """Whether ``name`` is one of hookline's configurations."""
        return any(s.name == name and s.is_hookline for s in self.systems)

    def median_of(self, system: str, kind: str, figure: Callable[[Run], float]) -> float | None:
        """A figure's median over a pair's runs (``None``: the pair was not run)."""
        runs = self.runs_of(system, kind)
        return median(figure(r) for r in runs) if runs else None

    def rate(self, system: str, kind: str) -> float | None:
        """A pair's median events/s."""
        return self.median_of(system, kind, lambda r: r.events_per_s)

    def ratio(self, system: str, kind: str, other: str | None, other_kind: str) -> float | None:
        """Median over rounds of ``system``'s events/s over ``other``'s (``None``: the best
        peer of ``other_kind`` in each round)."""
        found = []
        for rnd in self.rounds:
            mine = [r.events_per_s for r in rnd if (r.system, r.kind) == (system, kind)]
            theirs = [
                r.events_per_s
                for r in rnd
                if r.kind == other_kind
                and (r.system == other if other else not self.is_hookline(r.system))
            ]
            if mine and theirs and max(theirs) > 0:
                found.append(mine[0] / max(theirs))
        return median(found) if found else None

    def best_peer(self, kind: str) -> str | None:
        """The peer with the highest median events/s for ``kind``."""
        rates = [
            (rate, name)
            for name, k in self.pairs()
            if k == kind and not self.is_hookline(name)
            if (rate := self.rate(name, k)) is not None
        ]
        return max(rates)[1] if rates else None

    def targets(self) -> list[Target]:
        """The issue's targets, from this run's figures."""
        sync = self.rate("hookline", SYNC_KIND)
        return [
            Target(
                "a",
                f"(a) hookline >= 2x the best peer ({self.best_peer(INCR_KIND) or 'none run'})",
                self.ratio("hookline", INCR_KIND, None, INCR_KIND),
                2.0,
                "x",
            ),
            Target(
                "b-sync",
                "(b-sync) hookline, 8 in flight, >= 1.0x Dramatiq at 8 threads",
                self.ratio("hookline", SYNC_KIND, REFERENCE_PEER, SYNC_KIND),
                1.0,
                "x",
            ),
            Target(
                "b-sync-ceiling",
                f"(b-sync) hookline >= 90 % of the {SYNC_CEILING:,.0f}/s 8 x 10 ms allow",
                None if sync is None else sync / SYNC_CEILING,
                0.9,
                "of ceiling",
            ),
            Target(
                "b-async",
                "(b-async) hookline, 200 in flight, >= 5x Dramatiq at 8 threads",
                self.ratio("hookline", ASYNC_KIND, REFERENCE_PEER, SYNC_KIND),
                5.0,
                "x",
            ),
        ]

    def summary(self, system: str, kind: str) -> dict[str, Any]:
        """A pair's medians, spread and ratio to the best peer, JSON-ready."""
        runs = self.runs_of(system, kind)
        rates = [r.events_per_s for r in runs]
        ratio = self.ratio(system, kind, None, kind)

        def med(figure: Callable[[Run], float], digits: int = 1) -> float:
            return round(median(figure(r) for r in runs), digits)

        return {
            "system": system,
            "kind": kind,
            "events_per_s": round(median(rates), 1),
            "events_per_s_per_round": [round(x, 1) for x in rates],
            "events": [r.events for r in runs],
            "busy_s": med(lambda r: r.busy, 2),
            "worker_cpu_s": med(lambda r: r.worker_cpu, 2),
            "worker_cpu_us_per_event": med(lambda r: r.worker_us_per_event),
            "redis_cpu_us_per_event": med(lambda r: r.redis_cpu / r.events * 1e6),
            "peak_rss_mb": med(lambda r: r.rss_bytes / 2**20),
            "peak_rss_all_processes_mb": med(lambda r: r.rss_all_bytes / 2**20),
            "processes": max(r.processes for r in runs),
            "others_cpus_busy": med(lambda r: r.others_load, 2),
            "vs_best_peer": None if ratio is None else round(ratio, 3),
        }

    def as_json(self) -> dict[str, Any]:
        """The whole run as one JSON-ready object."""
        return {
            "benchmark": "peers",
            "settings": self.settings,
            "systems": {
                s.name: {"version": s.version, "configured": s.configured} for s in self.systems
            },
            "results": [self.summary(name, kind) for name, kind in self.pairs()],
            "targets": [t.as_dict() for t in self.targets()],
            "lag": self.lag.as_dict() if self.lag else {"skipped": self.lag_note},
            "rounds": [[r.as_dict() for r in rnd] for rnd in self.rounds],
            "calibration": [r.as_dict() for r in self.calibration],
        }


def _row(s: dict[str, Any], label: str) -> str:
    spread = s["events_per_s_per_round"]
    ratio = "-" if s["vs_best_peer"] is None else f"{s['vs_best_peer']:.2f}x"
    return (
        f"  {label:<28}{s['events_per_s']:>10,.0f}  {min(spread):>7,.0f}-{max(spread):<7,.0f}"
        f"{ratio:>8}{s['worker_cpu_s']:>9.2f}{s['worker_cpu_us_per_event']:>9,.0f}"
        f"{s['peak_rss_mb']:>6.0f} {s['peak_rss_all_processes_mb']:>4.0f} ({s['processes']})"
        f"{s['others_cpus_busy']:>8.2f}"
    )


def _label(results: Results, name: str, kind: str) -> str:
    if not results.is_hookline(name):
        return name
    concurrency = results.settings["hookline_concurrency"].get(kind)
    return f"hookline, concurrency {concurrency if concurrency is not None else 'n/a'}"


def _lag_lines(results: Results) -> list[str]:
    lag = results.lag
    if lag is None:
        return [f"end-to-end lag: skipped ({results.lag_note})"]
    p, w = lag.to_handler, lag.wrk
    return [
        f"end-to-end lag, `hookline serve` + one `hookline work` process, wrk open loop at "
        f"{lag.rate:,.0f} events/s ({results.settings['lag_share']:.0%} of hookline's best "
        f"median) for {w.duration_s:.1f} s: {w.answered_2xx:,} answered 2xx, "
        f"{w.non_2xx} other, {lag.handled:,} handled ({lag.events_per_job:.1f} events/job)",
        f"  receiver accepted -> handler started: p50 {p.p50_ms:.1f} ms, p99 {p.p99_ms:.1f} ms, "
        f"max {p.max_ms:.1f} ms",
    ]


def table(results: Results) -> str:
    """The human-readable report."""
    s = results.settings
    concurrency = ", ".join(
        f"{kind} {value if value is not None else 'n/a'}"
        for kind, value in s["hookline_concurrency"].items()
    )
    lines = [
        f"peer benchmark at {s.get('revision') or 'an unknown revision'}: one worker process "
        f"each, one private Redis (appendfsync everysec), the same {s['body_bytes']}-byte JSON "
        f"payload; median of {s['rounds']} interleaved rounds, each run sized for "
        f"{s['seconds_per_run']:g} s of jobs; Python {s['python']}, {s['cpus']} CPUs",
        f"hookline: {s['hookline_batch']} events per job (receiver-shaped batches); "
        f"workers.concurrency by kind: {concurrency}",
    ]
    header = (
        f"  {'system':<28}{'events/s':>10}  {'rounds min-max':<15}{'x best':>8}"
        f"{'CPU s':>9}{'us/event':>9}{'RSS MB, all (n)':>16}{'others':>8}"
    )
    for kind, title in KIND_TITLES.items():
        names = [name for name, k in results.pairs() if k == kind]
        if names:
            lines += ["", title, header]
            lines += [_row(results.summary(n, kind), _label(results, n, kind)) for n in names]
    lines += [
        "  (events/s: first job started to last INCR, read from Redis; x best: per-round ratio",
        "   to the best peer of the same handler, median; CPU s: the worker's process tree while",
        "   busy; RSS: peak resident set of the process running the jobs, and of all the",
        "   worker's n processes summed; others: CPUs kept busy by the rest of the machine)",
        "",
        "targets (issue 10):",
    ]
    for t in results.targets():
        verdict = {None: "not measured", True: "met", False: "NOT met"}[t.met]
        value = "-" if t.measured is None else f"{t.measured:.2f}"
        lines.append(f"  {t.wanted}: {value} {t.unit} -> {verdict}")
    lines += ["", *_lag_lines(results), "", *_machine_lines(results), "", "configured with:"]
    lines += [f"  {x.name} {x.version or '(missing)'}: {x.configured}" for x in results.systems]
    return "\n".join(lines)


def _machine_lines(results: Results) -> list[str]:
    runs = [r for rnd in results.rounds for r in rnd]
    if not runs:
        return []
    busy = sorted(r.others_load for r in runs)
    noisy = sum(1 for x in busy if x > NOISY)
    s = results.settings
    short = [r for r in runs if r.busy < s["seconds_per_run"] * SHORT]
    lines = [
        f"machine: load average {', '.join(map(str, s['load_average_at_start']))} at the start, "
        f"{', '.join(map(str, s.get('load_average_at_end', [])))} at the end; other processes "
        f"kept {median(busy):.2f} CPUs busy during a run (median; max {busy[-1]:.2f}); "
        f"{noisy} of {len(runs)} runs had more than {NOISY} busy elsewhere",
        f"runs lasted {min(r.busy for r in runs):.1f}-{max(r.busy for r in runs):.1f} s",
    ]
    if short:
        lines[-1] += (
            f"; {len(short)} ran under {SHORT:.0%} of the {s['seconds_per_run']:g} s asked "
            f"(faster than any run before them): "
            + ", ".join(f"{r.system} ({r.kind}) {r.busy:.1f} s" for r in short)
        )
    return lines


def summaries(results: Results) -> Sequence[dict[str, Any]]:
    """Every pair's summary, in the order of the first round."""
    return [results.summary(n, k) for n, k in results.pairs()]
