"""Reconcile what the receiver acknowledged with what the handler did.

The promise checked: every event answered 2xx took effect exactly once or sits in the
dead-letter queue; no request went unanswered except by a visible connection error; and
an event that ran twice did so only because its worker was SIGKILLed between the
handler's effect and the done marker (the window the README documents, which an
idempotent handler absorbs), never otherwise: not after a Redis restart or failover.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tests.load import TIMEOUT, Delivery

#: Fault kinds.
WORKER_KILL = "worker SIGKILL"
REDIS_RESTART = "Redis restart"
RECEIVER_RESTART = "receiver restart"
FAILOVER = "Sentinel failover"
#: Seconds after a fault ends during which errors are still attributed to it.
AFTERMATH = 2.0
#: Longest plausible time between a handler's effect and its done marker, in seconds: a
#: re-run is put down to a fault only if the fault struck that soon after the effect.
WINDOW = 1.0


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault injected: what, when, and the processes it killed."""

    kind: str
    start: float
    end: float
    detail: str = ""
    pids: tuple[int, ...] = ()

    def covers(self, start: float, end: float) -> bool:
        """Whether [start, end] overlaps the fault or its aftermath."""
        return start <= self.end + AFTERMATH and end >= self.start


@dataclass(frozen=True, slots=True)
class Run:
    """One successful run of a handler: by which worker process, when, on which attempt."""

    pid: int
    at: float
    attempt: int


@dataclass
class Reconciliation:
    """The outcome of one run of a fault suite, with everything that broke the promise."""

    deliveries: int = 0
    duplicates_sent: int = 0
    events: int = 0
    acknowledged: int = 0
    #: Deliveries that were a provider-style retry of an unacknowledged event.
    redeliveries: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    handled_once: int = 0
    dead_lettered: int = 0
    handled_unacknowledged: int = 0
    retried_events: int = 0
    lost: list[str] = field(default_factory=list)
    bad_status: list[tuple[str, int]] = field(default_factory=list)
    handled_and_dead: list[str] = field(default_factory=list)
    #: Event id -> re-runs that a worker SIGKILL between effect and done marker explains.
    reruns: dict[str, int] = field(default_factory=dict)
    #: Event id -> the faults around the first run of an event that ran again otherwise.
    unexplained_reruns: dict[str, str] = field(default_factory=dict)
    per_fault: dict[str, Counter[str]] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Every broken promise, one line each (empty when the run is clean)."""
        found = []
        if self.lost:
            found.append(
                f"{len(self.lost)} acknowledged event(s) neither handled nor dead: {self.lost[:5]}"
            )
        if self.bad_status:
            found.append(f"answers other than 2xx, 4xx or 503: {self.bad_status[:5]}")
        if self.handled_and_dead:
            found.append(f"handled and also dead-lettered: {self.handled_and_dead[:5]}")
        if self.errors[TIMEOUT]:
            found.append(f"{self.errors[TIMEOUT]} request(s) got no answer in time")
        if self.unexplained_reruns:
            sample = dict(list(self.unexplained_reruns.items())[:3])
            found.append(
                f"{len(self.unexplained_reruns)} event(s) ran again without a worker SIGKILL "
                f"between effect and done marker (id: faults around): {sample}"
            )
        return found

    def render(self) -> str:
        """A human-readable report: totals, then the counts attributed to each fault."""
        near = Counter(self.unexplained_reruns.values())
        lines = [
            f"deliveries {self.deliveries} (duplicates {self.duplicates_sent}, "
            f"redeliveries {self.redeliveries}), "
            f"events {self.events}, acknowledged {self.acknowledged}",
            f"answers: {dict(sorted(self.statuses.items()))}; "
            f"no answer: {dict(sorted(self.errors.items()))}",
            f"acknowledged events handled once {self.handled_once}, "
            f"dead-lettered {self.dead_lettered}, lost {len(self.lost)}; "
            f"handled without a 2xx {self.handled_unacknowledged}; "
            f"retried after a handler failure {self.retried_events}",
            f"re-runs after a worker SIGKILL between effect and done marker: "
            f"{sum(self.reruns.values())}; other re-runs: {dict(near) or 0}",
        ]
        for kind, counts in self.per_fault.items():
            lines.append(f"  {kind:<18} {dict(sorted(counts.items()))}")
        return "\n".join(lines)


def _killed_in_window(previous: Run, current: Run, faults: Sequence[Fault]) -> bool:
    """Whether the earlier run's worker was SIGKILLed just after its effect, before the
    re-run: the one window the README documents (an idempotent handler absorbs it)."""
    return any(
        fault.kind == WORKER_KILL
        and previous.pid in fault.pids
        and previous.at <= fault.start <= previous.at + WINDOW
        and fault.start <= current.at
        for fault in faults
    )


def _near(run: Run, faults: Sequence[Fault]) -> str:
    """The faults under way around a run, to say where an unexplained re-run came from."""
    kinds = sorted({f.kind for f in faults if f.start - WINDOW <= run.at <= f.end + AFTERMATH})
    return ", ".join(kinds) or "no fault"


def reconcile(
    deliveries: Sequence[Delivery],
    effects: Mapping[str, int],
    runs: Mapping[str, Sequence[Run]],
    dead: Iterable[str],
    failures: Mapping[str, int],
    faults: Sequence[Fault],
) -> Reconciliation:
    """Check the deliveries against the ledger and the dead-letter queue.

    Args:
        deliveries: every request sent and what it got.
        effects: event id -> successful handler runs.
        runs: event id -> its runs, for the events that ran more than once.
        dead: the event ids in the dead-letter queue.
        failures: event id -> failed handler attempts.
        faults: the faults injected, for attributing errors and explaining re-runs.
    """
    result = Reconciliation(deliveries=len(deliveries))
    dead_ids = set(dead)
    acknowledged: set[str] = set()
    seen: set[str] = set()
    result.per_fault = {}
    for d in deliveries:
        seen.add(d.event_id)
        result.duplicates_sent += d.duplicate
        result.redeliveries += d.redelivery > 0
        if d.status is not None:
            result.statuses[str(d.status)] += 1
            if d.acknowledged:
                acknowledged.add(d.event_id)
            elif not (400 <= d.status < 500 or d.status == 503):
                result.bad_status.append((d.event_id, d.status))
        else:
            result.errors[str(d.error)] += 1
        if d.acknowledged:
            continue
        outcome = str(d.status) if d.status is not None else str(d.error)
        covering = [f for f in faults if f.covers(d.sent, d.done)]
        kind = max(covering, key=lambda f: f.start).kind if covering else "no fault"
        result.per_fault.setdefault(kind, Counter())[outcome] += 1
    for fault in faults:
        result.per_fault.setdefault(fault.kind, Counter())["injected"] += 1
    result.events = len(seen)
    result.acknowledged = len(acknowledged)
    result.retried_events = sum(1 for n in failures.values() if n)
    for event_id in sorted(seen):
        count = effects.get(event_id, 0)
        if event_id not in acknowledged:
            result.handled_unacknowledged += count > 0
        elif count == 0:
            if event_id in dead_ids:
                result.dead_lettered += 1
            else:
                result.lost.append(event_id)
        elif event_id in dead_ids:
            result.handled_and_dead.append(event_id)
        elif count == 1:
            result.handled_once += 1
        if count > 1:
            ordered = sorted(runs.get(event_id, ()), key=lambda r: r.at)
            for previous, current in itertools.pairwise(ordered):
                if not _killed_in_window(previous, current, faults):
                    result.unexplained_reruns[event_id] = _near(previous, faults)
                    break
            else:
                result.reruns[event_id] = len(ordered) - 1
    return result
