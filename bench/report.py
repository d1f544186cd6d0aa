"""The receiver benchmark's results: checked, summarised over rounds, tabulated, or as JSON.

A run is a list of rounds, each measuring every selected target once, in the same order.
Ratios are taken within a round, where the measurements compared are seconds apart, and
reported as their median; each target's figures are its medians over the rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from statistics import median
from typing import Any

from bench.cpu import CpuShare
from bench.stored import Stored
from bench.wrk import WrkResult

#: The share of the bare receiver's throughput hookline aims at.
TARGET_RATIO = 0.5
#: Cores used by processes outside the benchmark above which the figures are suspect.
NOISY = 0.2


@dataclass(frozen=True, slots=True)
class Target:
    """A receiver under test: ``key`` (a, b, c), ``name`` and what it is."""

    key: str
    name: str
    label: str


@dataclass(frozen=True, slots=True)
class Measured:
    """One target's run and, when it stores events, what it left in Redis."""

    target: Target
    wrk: WrkResult
    stored: Stored | None
    cpu: CpuShare | None

    @property
    def consistent(self) -> bool | None:
        """Whether Redis holds every 2xx-answered event, once, and nothing never sent.

        wrk stops mid-flight: requests it sent but never saw answered may have been
        stored too, so the stored count lies between the 2xx answers and that plus
        the unanswered requests. ``None`` when the target stores nothing.
        """
        if self.stored is None:
            return None
        w, s = self.wrk, self.stored
        in_range = w.answered_2xx <= s.events <= w.answered_2xx + w.unanswered
        return in_range and s.distinct in (None, s.events)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        w = self.wrk
        return {
            "key": self.target.key,
            "label": self.target.label,
            "rps": round(w.rps, 1),
            **asdict(w),
            "answered_2xx": w.answered_2xx,
            "unanswered": w.unanswered,
            "stored": asdict(self.stored) if self.stored is not None else None,
            "cpu": asdict(self.cpu) if self.cpu is not None else None,
            "consistent": self.consistent,
        }


#: One round: every selected target measured once, in the order of the run.
Round = Sequence[Measured]


@dataclass(frozen=True, slots=True)
class Summary:
    """One target over every round: medians of its figures, totals of its counts."""

    target: Target
    #: Its measurement in each round, in round order.
    runs: tuple[Measured, ...]

    def _median(self, figure: Callable[[WrkResult], float]) -> float:
        return median(figure(m.wrk) for m in self.runs)

    def _total(self, count: Callable[[WrkResult], int]) -> int:
        return sum(count(m.wrk) for m in self.runs)

    @property
    def rps(self) -> float:
        """Median requests/s."""
        return self._median(lambda w: w.rps)

    @property
    def p50_ms(self) -> float:
        """Median of the rounds' median latencies."""
        return self._median(lambda w: w.p50_ms)

    @property
    def p99_ms(self) -> float:
        """Median of the rounds' 99th percentiles."""
        return self._median(lambda w: w.p99_ms)

    @property
    def non_2xx(self) -> int:
        """Answers other than 2xx, all rounds together."""
        return self._total(lambda w: w.non_2xx)

    @property
    def errors(self) -> int:
        """Socket errors and timeouts, all rounds together."""
        return self._total(lambda w: w.socket_errors + w.timeouts)

    @property
    def cpu(self) -> CpuShare | None:
        """Each CPU figure's median over the rounds that measured it."""
        shares = [m.cpu for m in self.runs if m.cpu is not None]
        if not shares:
            return None
        medians = {f.name: median(getattr(s, f.name) for s in shares) for f in fields(CpuShare)}
        return CpuShare(**{name: round(value, 3) for name, value in medians.items()})

    def _rounds_where(self, failed: Callable[[Measured], bool]) -> list[int]:
        """The rounds (from 1) whose measurement ``failed``."""
        return [n for n, m in enumerate(self.runs, start=1) if failed(m)]

    @property
    def mismatched(self) -> list[int]:
        """The rounds in which Redis did not hold what was answered."""
        return self._rounds_where(lambda m: m.consistent is False)

    @property
    def exhausted(self) -> list[int]:
        """The rounds in which the request pool ran out."""
        return self._rounds_where(lambda m: m.wrk.exhausted > 0)

    @property
    def noisy(self) -> list[int]:
        """The rounds during which other processes kept more than :data:`NOISY` CPUs busy."""
        return self._rounds_where(lambda m: m.cpu is not None and m.cpu.other > NOISY)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: medians of rates, latencies and CPU; totals of counts."""
        cpu = self.cpu
        return {
            "key": self.target.key,
            "label": self.target.label,
            "rps": round(self.rps, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self._median(lambda w: w.p90_ms),
            "p99_ms": self.p99_ms,
            "requests": self._total(lambda w: w.requests),
            "non_2xx": self.non_2xx,
            "socket_errors": self._total(lambda w: w.socket_errors),
            "timeouts": self._total(lambda w: w.timeouts),
            "exhausted": self._total(lambda w: w.exhausted),
            "cpu": asdict(cpu) if cpu is not None else None,
            "consistent": None if self.runs[0].stored is None else not self.mismatched,
            "mismatched_rounds": self.mismatched,
            "exhausted_rounds": self.exhausted,
        }


def summarise(rounds: Sequence[Round]) -> list[Summary]:
    """Each target's measurements across ``rounds``, in the order of the first round."""
    return [
        Summary(first.target, tuple(m for r in rounds for m in r if m.target == first.target))
        for first in rounds[0]
    ]


def ratios(results: Round) -> dict[str, float]:
    """``c/a`` and ``c/b`` in requests/s, for the targets of one round (and ``d/c``: two
    receiver processes against one)."""
    rps = {m.target.key: m.wrk.rps for m in results}
    found = {}
    for mine, other in (("c", "a"), ("c", "b"), ("d", "c")):
        if mine in rps and rps.get(other):
            found[f"{mine}/{other}"] = round(rps[mine] / rps[other], 3)
    return found


def ratios_per_round(rounds: Sequence[Round]) -> dict[str, list[float]]:
    """Each ratio of :func:`ratios`, round after round."""
    found: dict[str, list[float]] = {}
    for results in rounds:
        for name, value in ratios(results).items():
            found.setdefault(name, []).append(value)
    return found


def median_ratios(rounds: Sequence[Round]) -> dict[str, float]:
    """The median over the rounds of each ratio: what the run reports."""
    return {name: round(median(v), 3) for name, v in ratios_per_round(rounds).items()}


def as_json(settings: dict[str, Any], rounds: Sequence[Round]) -> dict[str, Any]:
    """The whole run as one JSON-ready object.

    ``results`` and ``ratios`` hold the medians over the rounds (the keys of a run of
    one round before rounds existed); ``rounds`` holds each round's measurements.
    """
    return {
        "benchmark": "receiver",
        "settings": settings,
        "results": {s.target.name: s.as_dict() for s in summarise(rounds)},
        "ratios": median_ratios(rounds),
        "ratios_per_round": ratios_per_round(rounds),
        "rounds": [
            {"results": {m.target.name: m.as_dict() for m in r}, "ratios": ratios(r)}
            for r in rounds
        ],
        "target": {"c/a": TARGET_RATIO},
    }


def _rounds(numbers: Sequence[int]) -> str:
    """``round 2`` or ``rounds 1, 3``."""
    return f"round{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"


def which_rounds(summaries: Sequence[Summary], rounds_of: Callable[[Summary], list[int]]) -> str:
    """``(a) round 2, (c) rounds 1, 3``: each target's rounds that ``rounds_of`` picks."""
    found = [(s.target.key, rounds_of(s)) for s in summaries]
    return ", ".join(f"({key}) {_rounds(numbers)}" for key, numbers in found if numbers)


def _figures(settings: dict[str, Any], summaries: Sequence[Summary]) -> list[str]:
    lines = [
        f"receiver benchmark, median of {settings['rounds']} rounds (each round measures "
        f"every target in turn): wrk {settings['connections']} connections, "
        f"{settings['threads']} threads, {settings['duration']} s after a "
        f"{settings['warmup']} s warm-up; {settings['body_bytes']}-byte Stripe-signed "
        f"events, every id distinct; Redis appendfsync {settings['appendfsync']}; "
        f"revision {settings.get('revision') or 'unknown'}",
        "",
        f"{'':<4}{'receiver':<40}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'errors':>8}",
    ]
    lines += [
        f"({s.target.key}) {s.target.label:<40}{s.rps:>9,.0f}{s.p50_ms:>9.2f}"
        f"{s.p99_ms:>9.2f}{s.non_2xx:>9,}{s.errors:>8,}"
        for s in summaries
    ]
    return lines


def _ratio_lines(rounds: Sequence[Round], exhausted: bool) -> list[str]:
    found = median_ratios(rounds)
    if not found:
        return []
    verdict = "   ".join(f"{name} = {value:.2f}" for name, value in found.items())
    if exhausted:
        verdict += "   (not valid: the request pool ran out, see below)"
    elif "c/a" in found:
        met = "met" if found["c/a"] >= TARGET_RATIO else "NOT met"
        verdict += f"   (target c/a >= {TARGET_RATIO}: {met})"
    spread = [
        f"{name} per round: {' '.join(f'{v:.2f}' for v in values)}  (median {found[name]:.2f})"
        for name, values in ratios_per_round(rounds).items()
    ]
    return ["medians of the per-round ratios:", verdict, *spread]


def cpu_lines(settings: dict[str, Any], summaries: Sequence[Summary]) -> list[str]:
    """Each target's median CPU shares, and a warning when other processes were busy."""
    shares = [(s.target.key, s.cpu) for s in summaries if s.cpu is not None]
    if not shares:
        return []
    lines = [f"CPU during each run, in cores (of {settings['cpus']}), median of the rounds:"]
    lines += [
        f"  ({key}) receiver {c.server:.2f} ({c.server_us_per_request:.0f} us per request), "
        f"redis {c.redis:.2f}, wrk {c.wrk:.2f}, other processes {c.other:.2f}"
        for key, c in shares
    ]
    noisy = which_rounds(summaries, lambda s: s.noisy)
    if noisy:
        lines.append(
            f"  WARNING: other processes were busy during {noisy}: "
            "the figures are skewed; rerun on a quiet machine"
        )
    return lines


def _stored_text(m: Measured, s: Stored) -> str:
    """What Redis held after one measurement, next to what wrk was answered."""
    if s.distinct is None:
        what = f"{s.events:,} jobs of one event"
    else:
        per_job = f"{s.events / s.jobs:.1f}" if s.jobs else "-"
        what = f"{s.events:,} events ({s.distinct:,} distinct ids) in {s.jobs:,} jobs of {per_job}"
    w = m.wrk
    return f"{what} in Redis; {w.answered_2xx:,} answered 2xx, {w.unanswered} unanswered"


def check_lines(summary: Summary) -> list[str]:
    """A line of totals over the rounds, then one per round that mismatched."""
    runs = [(n, m, m.stored) for n, m in enumerate(summary.runs, start=1) if m.stored is not None]
    if not runs:
        return []
    bad = summary.mismatched
    verdict = f"MISMATCH in {_rounds(bad)}" if bad else f"OK in all {len(runs)} rounds"
    stored = sum(s.events for _, _, s in runs)
    answered = sum(m.wrk.answered_2xx for _, m, _ in runs)
    unanswered = sum(m.wrk.unanswered for _, m, _ in runs)
    lines = [
        f"  ({summary.target.key}) {verdict}; all rounds together: {stored:,} events in "
        f"Redis, {answered:,} answered 2xx, {unanswered} unanswered when wrk stopped"
    ]
    lines += [f"      round {n}: {_stored_text(m, s)}" for n, m, s in runs if n in bad]
    return lines


def table(settings: dict[str, Any], rounds: Sequence[Round]) -> str:
    """A human-readable table of the run: medians, per-round ratios, CPU, checks."""
    summaries = summarise(rounds)
    exhausted = which_rounds(summaries, lambda s: s.exhausted)
    checks = [line for s in summaries for line in check_lines(s)]
    sections = [
        _figures(settings, summaries),
        _ratio_lines(rounds, bool(exhausted)),
        cpu_lines(settings, summaries),
        ["stored vs answered, checked after every run:", *checks] if checks else [],
        [
            f"WARNING: the request pool ran out for {exhausted}: "
            "figures are not valid; rerun with a larger --max-rate"
        ]
        if exhausted
        else [],
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines)
