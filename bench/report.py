"""The receiver benchmark's results: checked, tabulated, or as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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


def ratios(results: list[Measured]) -> dict[str, float]:
    """``c/a`` and ``c/b`` in requests/s, for the targets that ran."""
    rps = {m.target.key: m.wrk.rps for m in results}
    found = {}
    for other in ("a", "b"):
        if "c" in rps and rps.get(other):
            found[f"c/{other}"] = round(rps["c"] / rps[other], 3)
    return found


def as_json(settings: dict[str, Any], results: list[Measured]) -> dict[str, Any]:
    """The whole run as one JSON-ready object."""
    return {
        "benchmark": "receiver",
        "settings": settings,
        "results": {m.target.name: m.as_dict() for m in results},
        "ratios": ratios(results),
        "target": {"c/a": TARGET_RATIO},
    }


def _check_line(m: Measured) -> str:
    w, s = m.wrk, m.stored
    if s is None:
        return ""
    if s.distinct is None:
        what = f"{s.events:,} jobs of one event"
    else:
        per_job = f"{s.events / s.jobs:.1f}" if s.jobs else "-"
        what = f"{s.events:,} events ({s.distinct:,} distinct ids) in {s.jobs:,} jobs of {per_job}"
    verdict = "OK" if m.consistent else "MISMATCH"
    return (
        f"  ({m.target.key}) {verdict}: {what} in Redis; "
        f"{w.answered_2xx:,} answered 2xx, {w.unanswered} unanswered when wrk stopped"
    )


def table(settings: dict[str, Any], results: list[Measured]) -> str:
    """A human-readable table of the run."""
    lines = [
        f"receiver benchmark: wrk {settings['connections']} connections, "
        f"{settings['threads']} threads, {settings['duration']} s after a "
        f"{settings['warmup']} s warm-up; {settings['body_bytes']}-byte Stripe-signed "
        f"events, every id distinct; Redis appendfsync everysec; "
        f"revision {settings.get('revision') or 'unknown'}",
        "",
        f"{'':<4}{'receiver':<40}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'errors':>8}",
    ]
    for m in results:
        w = m.wrk
        lines.append(
            f"({m.target.key}) {m.target.label:<40}{w.rps:>9,.0f}{w.p50_ms:>9.2f}"
            f"{w.p99_ms:>9.2f}{w.non_2xx:>9,}{w.socket_errors + w.timeouts:>8,}"
        )
    found = ratios(results)
    if found:
        lines.append("")
        lines.append("   ".join(f"{name} = {value:.2f}" for name, value in found.items()))
        if any(m.wrk.exhausted for m in results):
            lines[-1] += "   (not valid: the request pool ran out, see below)"
        elif "c/a" in found:
            met = "met" if found["c/a"] >= TARGET_RATIO else "NOT met"
            lines[-1] += f"   (target c/a >= {TARGET_RATIO}: {met})"
    shares = [(m.target.key, m.cpu) for m in results if m.cpu is not None]
    if shares:
        lines += ["", f"CPU during each run, in cores (of {settings['cpus']}):"]
        lines += [
            f"  ({key}) receiver {c.server:.2f} ({c.server_us_per_request:.0f} us per request), "
            f"redis {c.redis:.2f}, wrk {c.wrk:.2f}, other processes {c.other:.2f}"
            for key, c in shares
        ]
        noisy = [key for key, c in shares if c.other > NOISY]
        if noisy:
            lines.append(
                f"  WARNING: other processes were busy during ({', '.join(noisy)}): "
                "the figures are skewed; rerun on a quiet machine"
            )
    checks = [line for line in map(_check_line, results) if line]
    if checks:
        lines += ["", "stored vs answered:", *checks]
    exhausted = [m.target.key for m in results if m.wrk.exhausted]
    if exhausted:
        lines += [
            "",
            f"WARNING: the request pool ran out for ({', '.join(exhausted)}): "
            "figures are not valid; rerun with a larger --max-rate",
        ]
    return "\n".join(lines)
