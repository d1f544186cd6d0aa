"""Drive wrk with ``pool.lua`` and read back what it measured."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import BenchError

#: The wrk script that sends the pre-signed pool.
SCRIPT = Path(__file__).with_name("pool.lua")
#: Prefix of the machine-readable line printed by the script's ``done()``.
RESULT_MARK = "BENCH_RESULT "


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run, as ``pool.lua`` reports it. Latencies are in milliseconds."""

    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    #: Requests wrk started writing, answered or not.
    sent: int
    #: Requests sent after the pool ran out (answered 404, so counted in ``non_2xx``).
    exhausted: int

    @property
    def rps(self) -> float:
        """Answered requests per second."""
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def answered_2xx(self) -> int:
        """Answers with a 2xx status (wrk counts only statuses over 399 as errors)."""
        return self.requests - self.non_2xx

    @property
    def unanswered(self) -> int:
        """Requests in flight when wrk stopped, or cut by a socket error."""
        return max(0, self.sent - self.requests)

    @classmethod
    def from_report(cls, data: dict[str, float]) -> WrkResult:
        """Build from the JSON object of the ``BENCH_RESULT`` line."""
        ms = 1000.0
        return cls(
            requests=int(data["requests"]),
            duration_s=data["duration_us"] / 1e6,
            non_2xx=int(data["non_2xx"]),
            socket_errors=int(data["connect_errors"] + data["read_errors"] + data["write_errors"]),
            timeouts=int(data["timeouts"]),
            p50_ms=data["p50_us"] / ms,
            p90_ms=data["p90_us"] / ms,
            p99_ms=data["p99_us"] / ms,
            max_ms=data["max_us"] / ms,
            mean_ms=data["mean_us"] / ms,
            # wrk calls request() once more, before starting, to check the script's output.
            sent=int(data["sent"]) - 1,
            exhausted=int(data["exhausted"]),
        )


def find_wrk() -> str:
    """The wrk binary on PATH.

    Raises:
        BenchError: when wrk is not installed, saying how to install it.
    """
    found = shutil.which("wrk")
    if found is None:
        raise BenchError(
            "wrk is not installed; it is the load generator of this benchmark. "
            "Install it: `apt-get install -y wrk` (Debian/Ubuntu), `brew install wrk` (macOS)"
        )
    return found


def run_wrk(
    binary: str, url: str, pool_dir: Path, *, duration: int, connections: int, threads: int
) -> WrkResult:
    """Load ``url`` for ``duration`` seconds with the pool in ``pool_dir``.

    Raises:
        BenchError: when wrk fails or prints no result line.
    """
    argv = [
        binary,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={duration}s",
        f"--script={SCRIPT}",
        url,
        "--",
        str(pool_dir),
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 60} s") from None
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return WrkResult.from_report(json.loads(line.removeprefix(RESULT_MARK)))
    raise BenchError(
        f"wrk exited with status {done.returncode} without a result:\n{done.stdout}{done.stderr}"
    )
