"""The supervisor's restarts: at once after a healthy run, backing off in a crash loop.

``tests/test_faults.py`` checks that a worker killed after running a while is replaced
promptly every time; this checks the schedule itself, and that a fleet whose workers die
at start-up backs off without holding up its SIGTERM.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from hookline.redis.embedded import free_port
from hookline.supervise import (
    FIRST_RESTART_PAUSE,
    HEALTHY_RUN,
    MAX_RESTART_PAUSE,
    RestartBackoff,
)
from tests.cluster import WorkerFleet, write_pipeline_config
from tests.worker_support import wait_for

#: How long a worker that dies at start-up has run: well inside its start-up.
AT_START = 0.1


class TestRestartBackoff:
    def test_start_up_crashes_double_the_pause_up_to_the_maximum(self) -> None:
        """A slot whose workers keep dying at start-up waits 0.5 s, then 1, 2, 4 ... 30 s."""
        backoff = RestartBackoff()
        pauses = [backoff.pause(0, AT_START) for _ in range(10)]
        assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
        assert pauses[0] == FIRST_RESTART_PAUSE and pauses[-1] == MAX_RESTART_PAUSE

    def test_worker_that_ran_past_its_start_up_is_restarted_at_once(self) -> None:
        """A worker that dies after a healthy run is restarted without a pause, however
        many times that happens, and a later start-up crash backs off from the start."""
        backoff = RestartBackoff()
        for _ in range(3):
            backoff.pause(0, AT_START)
        assert [backoff.pause(0, HEALTHY_RUN + 1) for _ in range(5)] == [0.0] * 5
        assert backoff.pause(0, AT_START) == FIRST_RESTART_PAUSE

    def test_slots_back_off_independently(self) -> None:
        """One slot's crash loop does not lengthen another slot's pause."""
        backoff = RestartBackoff()
        for _ in range(4):
            backoff.pause(0, AT_START)
        assert backoff.pause(1, AT_START) == FIRST_RESTART_PAUSE

    def test_a_crash_loop_of_days_keeps_the_maximum_pause(self) -> None:
        """Thousands of start-up crashes leave the pause at the maximum (no overflow)."""
        backoff = RestartBackoff()
        for _ in range(5000):
            pause = backoff.pause(0, AT_START)
        assert pause == MAX_RESTART_PAUSE


def _restarts(fleet: WorkerFleet) -> list[dict[str, object]]:
    """The supervisor's "worker process died" log lines so far."""
    found = []
    for line in fleet.output().splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:  # a dying worker's traceback
            continue
        if isinstance(entry, dict) and entry.get("event") == "worker process died; restarting":
            found.append(entry)
    return found


class TestCrashLoop:
    def test_workers_dying_at_start_up_back_off_and_sigterm_stops_during_a_pause(
        self, tmp_path: Path
    ) -> None:
        """With Redis unreachable every worker dies at start-up: the restarts come after
        0.5, 1, then 2 s, and a SIGTERM during a pause stops the fleet at once, exit 0."""
        config = write_pipeline_config(
            tmp_path / "hookline.toml", f"redis://127.0.0.1:{free_port()}/0"
        )
        with WorkerFleet(config, tmp_path / "work.log", "redis://unused", processes=1) as fleet:
            wait_for(lambda: len(_restarts(fleet)) >= 3, what="three restarts", timeout=30)
            stopped = time.monotonic()
            code = fleet.stop(timeout=10)  # within the 2 s pause before the fourth start
            took = time.monotonic() - stopped
        assert [entry["pause"] for entry in _restarts(fleet)] == [0.5, 1.0, 2.0]
        assert code == 0, fleet.output()
        assert took < 1.0, f"SIGTERM during a restart pause took {took:.1f} s"
