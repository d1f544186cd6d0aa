"""The durability benchmark's results: each Redis setting against everysec, round by round.

A run is a list of rounds, each measuring ``hookline serve`` once under every setting, in
the same order, the first being the baseline. Ratios to the baseline are taken within a
round, from measurements seconds apart, and reported as their median; each setting's
figures are its medians over the rounds (see :mod:`bench.report`, whose summaries,
CPU lines and checks this report reuses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

from bench.report import (
    Measured,
    Round,
    Summary,
    Target,
    check_lines,
    cpu_lines,
    summarise,
    which_rounds,
)
from bench.wrk import WrkResult


@dataclass(frozen=True, slots=True)
class Setting:
    """A Redis durability setting ``hookline serve`` is measured under.

    ``key`` (a, b, c) and ``name`` identify it in the report and the JSON; ``label`` says
    what it is; ``appendfsync`` is Redis's AOF policy and ``wait_replicas`` both the
    number of replicas attached and the receiver's ``server.wait_replicas``.
    """

    key: str
    name: str
    label: str
    appendfsync: str
    wait_replicas: int

    @property
    def target(self) -> Target:
        """What :func:`bench.receiver.measure` serves: hookline, labelled by this setting."""
        return Target(self.key, "hookline", self.label)


#: A figure of one wrk run that ratios compare: requests/s, or the 99th percentile.
Figure = Callable[[WrkResult], float]
FIGURES: dict[str, Figure] = {"rps": lambda w: w.rps, "p99": lambda w: w.p99_ms}


def ratios(settings: Sequence[Setting], results: Round, figure: Figure) -> dict[str, float]:
    """``always/everysec`` and the like: each setting's ``figure`` over the first's, in a round."""
    base, *others = settings
    value = {m.target.key: figure(m.wrk) for m in results}
    if not value.get(base.key):
        return {}
    return {
        f"{s.name}/{base.name}": round(value[s.key] / value[base.key], 3)
        for s in others
        if s.key in value
    }


def ratios_per_round(
    settings: Sequence[Setting], rounds: Sequence[Round], figure: Figure
) -> dict[str, list[float]]:
    """Each ratio of :func:`ratios`, round after round."""
    found: dict[str, list[float]] = {}
    for results in rounds:
        for name, value in ratios(settings, results, figure).items():
            found.setdefault(name, []).append(value)
    return found


def median_ratios(
    settings: Sequence[Setting], rounds: Sequence[Round], figure: Figure
) -> dict[str, float]:
    """The median over the rounds of each ratio: what the run reports."""
    per_round = ratios_per_round(settings, rounds, figure)
    return {name: round(median(values), 3) for name, values in per_round.items()}


def _by_name(settings: Sequence[Setting], measured: Sequence[Measured]) -> dict[str, Any]:
    name = {s.key: s.name for s in settings}
    return {name[m.target.key]: m.as_dict() for m in measured}


def as_json(
    run: dict[str, Any], settings: Sequence[Setting], rounds: Sequence[Round]
) -> dict[str, Any]:
    """The whole run as one JSON-ready object; ``run`` holds what it was measured under.

    ``results`` and the ratios hold the medians over the rounds (``ratios``: requests/s,
    ``p99_ratios``: 99th percentiles); ``rounds`` holds each round's measurements.
    """
    summaries = summarise(rounds)
    return {
        "benchmark": "durability",
        "settings": run,
        "redis_settings": {s.name: asdict(s) for s in settings},
        "results": {
            s.name: summary.as_dict() for s, summary in zip(settings, summaries, strict=True)
        },
        **{
            f"{prefix}ratios": median_ratios(settings, rounds, figure)
            for prefix, figure in (("", FIGURES["rps"]), ("p99_", FIGURES["p99"]))
        },
        "ratios_per_round": ratios_per_round(settings, rounds, FIGURES["rps"]),
        "p99_ratios_per_round": ratios_per_round(settings, rounds, FIGURES["p99"]),
        "rounds": [
            {
                "results": _by_name(settings, r),
                "ratios": ratios(settings, r, FIGURES["rps"]),
                "p99_ratios": ratios(settings, r, FIGURES["p99"]),
            }
            for r in rounds
        ],
    }


def _figures(run: dict[str, Any], summaries: Sequence[Summary]) -> list[str]:
    lines = [
        f"durability benchmark: hookline serve under each Redis setting, median of "
        f"{run['rounds']} rounds (each round measures every setting in turn, each against "
        f"a Redis of its own): wrk {run['connections']} connections, {run['threads']} "
        f"threads, {run['duration']} s after a {run['warmup']} s warm-up; "
        f"{run['body_bytes']}-byte Stripe-signed events, every id distinct; "
        f"revision {run.get('revision') or 'unknown'}",
        "",
        f"{'':<4}{'Redis setting':<42}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'us/req':>8}{'non-2xx':>9}{'errors':>8}",
    ]
    for s in summaries:
        us = f"{s.cpu.server_us_per_request:.0f}" if s.cpu is not None else "-"
        lines.append(
            f"({s.target.key}) {s.target.label:<42}{s.rps:>9,.0f}{s.p50_ms:>9.2f}"
            f"{s.p99_ms:>9.2f}{us:>8}{s.non_2xx:>9,}{s.errors:>8,}"
        )
    lines.append("    (us/req: the receiver's CPU time per request)")
    return lines


def _ratio_lines(
    settings: Sequence[Setting], rounds: Sequence[Round], exhausted: bool
) -> list[str]:
    lines = [f"each setting against {settings[0].name} measured in the same round:"]
    for what, figure in (("req/s", FIGURES["rps"]), ("p99", FIGURES["p99"])):
        found = median_ratios(settings, rounds, figure)
        lines += [
            f"  {what:<5} {name} per round: {' '.join(f'{v:.2f}' for v in values)}"
            f"  (median {found[name]:.2f})"
            for name, values in ratios_per_round(settings, rounds, figure).items()
        ]
    if exhausted:
        lines.append("  (not valid: the request pool ran out, see below)")
    return lines


def table(run: dict[str, Any], settings: Sequence[Setting], rounds: Sequence[Round]) -> str:
    """A human-readable table of the run: medians, per-round ratios, CPU, checks."""
    summaries = summarise(rounds)
    exhausted = which_rounds(summaries, lambda s: s.exhausted)
    sections = [
        _figures(run, summaries),
        _ratio_lines(settings, rounds, bool(exhausted)),
        cpu_lines(run, summaries),
        [
            "stored vs answered, checked after every run:",
            *(line for s in summaries for line in check_lines(s)),
        ],
        [
            f"WARNING: the request pool ran out for {exhausted}: "
            "figures are not valid; rerun with a larger --max-rate"
        ]
        if exhausted
        else [],
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines)
