"""The load benchmark's search for the highest rate held (the method is in :mod:`bench.load`).

A rate counts as held when every step run at it that counts held: a rate held once and
refused when confirmed is refused. A refused step is left out, and run again, when
other processes kept the machine busy meanwhile. The bracket is recomputed from every
step that counts after each one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.load_step import WORKER_PROCESSES, Step
from bench.report import NOISY
from bench.worker_cpu import SELF

#: Rates are rounded to this many events/s.
GRAIN = 10.0

#: Share of the events/s a refused step handled that the next step aims at.
CAPACITY_MARGIN = 0.98

#: Runs one step at a rate (events/s); the search's only way to touch the pipeline.
RunStep = Callable[[float], Step]


def round_rate(rate: float) -> float:
    """``rate`` rounded to :data:`GRAIN` events/s, at least that."""
    return max(GRAIN, round(rate / GRAIN) * GRAIN)


@dataclass(frozen=True, slots=True)
class Bracket:
    """What the steps so far say: the highest rate held, the lowest refused above it."""

    held: float | None
    refused: float | None
    #: Steps run at :attr:`held` (each of them held).
    runs_at_held: int

    @classmethod
    def of(cls, steps: Sequence[Step]) -> Bracket:
        """The bracket of ``steps``: a rate refused once is refused."""
        refused = min((s.rate for s in steps if not s.held), default=None)
        passed = {s.rate for s in steps if s.held} - {s.rate for s in steps if not s.held}
        below = [r for r in passed if refused is None or r < refused]
        held = max(below, default=None)
        return cls(held, refused, sum(1 for s in steps if s.rate == held))

    def within(self, precision: float) -> bool:
        """Whether the held and refused rates are within ``precision`` of each other."""
        return (
            self.held is not None
            and self.refused is not None
            and self.refused <= self.held * (1 + precision)
        )


def projected_capacity(step: Step, cpus: int) -> float:
    """A rough capacity from a held step's CPU use, events/s.

    The least of: the machine's CPUs less what other processes took, the receiver's
    one CPU, the worker processes' one each, each divided by what it spent per event.
    """
    cpu, rate = step.latency.cpu, step.rate
    pipeline = sum(cpu.load(name) for name in ("receiver", "workers", "redis", "wrk", SELF))
    limits = []
    if pipeline > 0:
        limits.append(rate * (cpus - cpu.load("others")) / pipeline)
    if cpu.load("receiver") > 0:
        limits.append(rate / cpu.load("receiver"))
    if cpu.load("workers") > 0:
        limits.append(rate * WORKER_PROCESSES / cpu.load("workers"))
    return min(limits, default=2 * rate)


def next_rate(steps: Sequence[Step], precision: float, cpus: int) -> float | None:
    """The rate of the next step, or ``None`` when the search is over."""
    bracket, last = Bracket.of(steps), steps[-1]
    if bracket.within(precision):
        return bracket.held if bracket.runs_at_held < 2 else None  # confirm it once
    if bracket.held is None:  # nothing held yet: go down, under what was handled
        handled = min(last.depth.handled_per_s, last.latency.wrk.rps)
        low = bracket.refused or last.rate
        return round_rate(max(min(CAPACITY_MARGIN * handled, 0.9 * low), 0.5 * low))
    if bracket.refused is None:  # nothing refused yet: go up
        top = bracket.held
        return round_rate(min(max(projected_capacity(last, cpus), 1.25 * top), 2 * top))
    # A refused step's workers ran flat out: what they handled is a measure of the
    # capacity, often a closer one than the middle of the bracket.
    measured = round_rate(CAPACITY_MARGIN * last.depth.handled_per_s)
    if not last.held and bracket.held < measured < bracket.refused:
        return measured
    middle = round_rate((bracket.held + bracket.refused) / 2)
    if middle in (bracket.held, bracket.refused):
        return bracket.held if bracket.runs_at_held < 2 else None
    return middle


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Search:
    """Every step run, in order, and which of them the bracket is made of."""

    steps: tuple[Step, ...]
    #: Steps left out: refused while other processes took over :data:`NOISY` CPUs, and
    #: run again.
    rerun: frozenset[int]

    @property
    def counted(self) -> list[Step]:
        """The steps that count."""
        return [s for n, s in enumerate(self.steps) if n not in self.rerun]

    @property
    def bracket(self) -> Bracket:
        """The bracket the counted steps make."""
        return Bracket.of(self.counted)


def search(run: RunStep, *, start: float, precision: float, max_steps: int, cpus: int) -> Search:
    """Run steps from ``start`` until the bracket is within ``precision`` and its held
    rate confirmed, or ``max_steps`` have run.

    Other processes can only slow the pipeline down: a step refused while they kept
    over :data:`NOISY` CPUs busy is run again, once, and only the rerun counts.
    """
    steps: list[Step] = []
    rerun: set[int] = set()
    rate: float | None = round_rate(start)
    while rate is not None and len(steps) < max_steps:
        _progress(f"step {len(steps) + 1}: {rate:,.0f} events/s")
        step = run(rate)
        steps.append(step)
        verdict = "held" if step.held else "NOT held: " + "; ".join(step.failures)
        _progress(
            f"  {verdict}; backlog growth {step.depth.growth:,.0f} events/s, lag p50 "
            f"{step.latency.to_handler.p50_ms:.1f} ms p99 {step.latency.to_handler.p99_ms:.1f} ms"
        )
        retried = len(steps) - 2 in rerun
        if not step.held and step.others > NOISY and not retried:
            _progress(f"  other processes kept {step.others:.2f} CPUs busy: running it again")
            rerun.add(len(steps) - 1)
            continue
        rate = next_rate(Search(tuple(steps), frozenset(rerun)).counted, precision, cpus)
    return Search(tuple(steps), frozenset(rerun))
