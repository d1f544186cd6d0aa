"""The load benchmark's results: tabulated, or as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.load_search import Search
from bench.load_step import MAX_BACKLOG_S, MAX_GROWTH, MIN_2XX, MIN_ACHIEVED, Step
from bench.report import NOISY

#: The CPU groups of a step, in the order the tables show them, with their headings.
CPU_COLUMNS = (
    ("receiver", "recv"),
    ("workers", "work"),
    ("redis", "redis"),
    ("wrk", "wrk"),
    ("others", "others"),
)


@dataclass(frozen=True, slots=True)
class Results:
    """The search's steps, the rate found, and the runs at shares of that rate."""

    settings: dict[str, Any]
    search: Search
    #: (share of the highest rate held, the run at that share).
    shares: tuple[tuple[float, Step], ...]

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step of the search, in order."""
        return self.search.steps

    @property
    def confirmed(self) -> bool:
        """Whether the highest rate held was held twice."""
        return self.search.bracket.runs_at_held >= 2

    def noisy(self) -> list[str]:
        """The runs during which other processes kept more than :data:`NOISY` CPUs busy."""
        found = [f"step {n}" for n, s in enumerate(self.steps, start=1) if s.others > NOISY]
        found += [f"{share:.0%}" for share, s in self.shares if s.others > NOISY]
        return found

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready document."""
        return {
            "benchmark": "load",
            "settings": self.settings,
            "highest_rate_held": self.search.bracket.held,
            "confirmed": self.confirmed,
            "lowest_rate_not_held": self.search.bracket.refused,
            "steps": [
                {**s.as_dict(), "rerun": n in self.search.rerun} for n, s in enumerate(self.steps)
            ],
            "at_share": [{"share": share, **s.as_dict()} for share, s in self.shares],
            "noisy_runs": self.noisy(),
        }


def _cpu_cells(step: Step) -> str:
    return "".join(f"{step.latency.cpu.load(name):>7.2f}" for name, _ in CPU_COLUMNS)


def _cpu_heads() -> str:
    return "".join(f"{head:>7}" for _, head in CPU_COLUMNS)


def _verdict(results: Results, index: int) -> str:
    step = results.steps[index]
    if step.held:
        return "held"
    return "NOT held (noisy: run again)" if index in results.search.rerun else "NOT held"


def _search_lines(results: Results) -> list[str]:
    s = results.settings
    lines = [
        f"search, {s['step_s']:g} s per step; held = the backlog's floor rises by <= "
        f"{MAX_GROWTH:.0%} of the rate per second from the 2nd quarter to the 4th, the "
        f"backlog over the 4th quarter is < {MAX_BACKLOG_S:g} s of arrivals, >= {MIN_2XX:.0%} "
        f"answered 2xx, >= {MIN_ACHIEVED:.1%} of the offered rate "
        "answered (wrk's schedule kept up)",
        "",
        f"{'step':>4}{'offered/s':>11}{'answered/s':>11}{'2xx %':>7}{'late %':>7}"
        f"{'growth/s':>10}{'backlog':>9}{'handled/s':>11}{'lag p50':>9}{'lag p99':>9}{'aof':>4}"
        f"  CPUs:{_cpu_heads()}  verdict",
    ]
    for n, step in enumerate(results.steps, start=1):
        w, lat, d = step.latency.wrk, step.latency, step.depth
        share = 100 * w.answered_2xx / w.requests if w.requests else 0.0
        lines.append(
            f"{n:>4}{step.rate:>11,.0f}{w.rps:>11,.0f}{share:>7.1f}{step.late_share:>7.1%}"
            f"{d.growth:>10,.0f}{d.end_backlog:>9,.0f}{d.handled_per_s:>11,.0f}"
            f"{lat.to_handler.p50_ms:>9.1f}{lat.to_handler.p99_ms:>9.1f}{step.aof_rewrites:>4}"
            f"       {_cpu_cells(step)}  {_verdict(results, n - 1)}"
        )
    lines.append(
        "     (growth/s: of the backlog's floor; backlog: events waiting or held by a worker, "
        "4th quarter's average; handled/s: 2nd half; aof: Redis AOF rewrites; lag: ms from "
        "the receiver's acceptance to the handler's start, every event of the step, its "
        "backlog included; late: "
        "requests sent over 5 ms after their slot, "
        f"all {results.settings['connections']} connections then waiting on answers)"
    )
    for n, step in enumerate(results.steps, start=1):
        if not step.held:
            lines.append(f"     step {n}, {step.rate:,.0f}/s: {'; '.join(step.failures)}")
    return lines


def _share_lines(results: Results) -> list[str]:
    lines = [
        f"at shares of it, {results.settings['duration_s']:g} s each (lag: receiver accepts -> "
        "handler starts; receiver: wrk's request sent -> 2xx received):",
        "",
        f"{'share':>5}{'rate/s':>8}{'answered/s':>11}{'late %':>7}{'lag p50':>9}{'lag p99':>9}"
        f"{'lag max':>9}{'recv p50':>10}{'recv p99':>10}{'ev/job':>8}"
        f"  CPUs:{_cpu_heads()}  verdict",
    ]
    for share, step in results.shares:
        w, lat = step.latency.wrk, step.latency
        p = lat.to_handler
        lines.append(
            f"{share:>5.0%}{step.rate:>8,.0f}{w.rps:>11,.0f}{step.late_share:>7.1%}{p.p50_ms:>9.2f}"
            f"{p.p99_ms:>9.2f}{p.max_ms:>9.1f}{w.p50_ms:>10.2f}{w.p99_ms:>10.2f}"
            f"{lat.events_per_job:>8.2f}       {_cpu_cells(step)}  "
            f"{'held' if step.held else 'NOT held: ' + '; '.join(step.failures)}"
        )
    return lines


def table(results: Results) -> str:
    """A human-readable report."""
    s = results.settings
    load = ", ".join(f"{x:.2f}" for x in s["load_average_at_start"])
    lines = [
        f"load benchmark: one `hookline serve` + `hookline work --processes "
        f"{s['worker_processes']}`, one redis-server (appendfsync everysec); wrk open loop, "
        f"{s['connections']} connections, {s['body_bytes']}-byte Stripe events, each id "
        f"distinct, a handler that records its start (one RPUSH); {s['cpus']} CPUs (load "
        f"average at start {load}); Python {s['python']}",
        "",
        *_search_lines(results),
        "",
    ]
    held, refused = results.search.bracket.held, results.search.bracket.refused
    if held is None:
        lines.append("NO rate was held: even the lowest tried was refused; try a lower --start")
    else:
        above = (
            f"lowest not held: {refused:,.0f} events/s"
            if refused is not None
            else "no rate tried was refused: a lower bound; try a higher --start"
        )
        held_twice = "held twice" if results.confirmed else "held once, NOT confirmed"
        lines.append(
            f"highest rate held: {held:,.0f} events/s ({held_twice}; {above}; "
            f"{len(results.steps)} steps)"
        )
    if results.shares:
        lines += ["", *_share_lines(results)]
    noisy = results.noisy()
    if noisy:
        lines += [
            "",
            f"WARNING: other processes kept over {NOISY:g} CPUs busy during "
            f"{', '.join(noisy)}: those figures are skewed; rerun on a quieter machine",
        ]
    return "\n".join(lines)
