"""The fault suite: nothing acknowledged is lost or doubled through crashes and restarts.

``TestFaultSuite`` runs the whole pipeline as real processes (CI size; ``./run bench
faults`` runs it longer). ``TestReconcile`` checks that the reconciliation itself catches
each way the promise can break, so a clean report means something.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path

import redis

from hookline.redis import keys
from hookline.redis.embedded import EmbeddedRedis
from hookline.supervise import HEALTHY_RUN
from tests.cluster import SOURCE, Ledger, WorkerFleet, write_pipeline_config
from tests.faultsuite import SuiteOptions, run_suite, unsettled
from tests.load import REFUSED, TIMEOUT, Delivery
from tests.reconcile import (
    RECEIVER_RESTART,
    REDIS_RESTART,
    WORKER_KILL,
    Fault,
    Run,
    reconcile,
)
from tests.worker_support import enqueue, envelope, wait_for


class TestFaultSuite:
    def test_acknowledged_events_survive_worker_kills_and_redis_and_receiver_restarts(
        self, tmp_path: Path
    ) -> None:
        """Under signed load with 10 % duplicates and 5 % failing handlers, through worker
        SIGKILLs and Redis and receiver restarts, every 2xx is handled once or dead-lettered,
        and a provider retrying what was refused gets (almost) every event acknowledged."""
        result = run_suite(tmp_path, SuiteOptions())
        report = result.render()
        print(report)
        rec = result.reconciliation
        assert rec.problems() == [], report
        assert rec.handled_once + rec.dead_lettered + len(rec.reruns) == rec.acknowledged, report
        assert result.receiver_exit_codes == [0, 0], report
        assert {WORKER_KILL, REDIS_RESTART, RECEIVER_RESTART} <= set(rec.per_fault), report
        assert rec.duplicates_sent > rec.deliveries * 0.05, report
        assert rec.retried_events > 0 and rec.dead_lettered > 0, report
        assert rec.redeliveries > 0, report
        assert rec.acknowledged > rec.events * 0.98, report


class TestWorkersThroughFaults:
    def test_redis_down_when_the_done_marker_is_due_does_not_rerun_the_event(
        self, tmp_path: Path
    ) -> None:
        """Redis away for a second just after a handler's effect: once it is back the
        worker writes its done marker, and the event does not run again."""
        with (
            EmbeddedRedis(tmp_path / "redis", appendfsync="always") as server,
            EmbeddedRedis(tmp_path / "ledger") as ledger_server,
        ):
            ledger = Ledger(ledger_server)
            client = redis.Redis.from_url(server.url)
            config = write_pipeline_config(tmp_path / "hookline.toml", server.url)
            with WorkerFleet(config, tmp_path / "work.log", ledger.url, processes=1) as fleet:
                fleet.wait_for_workers()
                enqueue(client, envelope("evt_linger", linger=0.5))
                wait_for(lambda: "evt_linger" in ledger.effects(), what="the handler's effect")
                server.stop()  # the handler still lingers: its done marker is not written
                time.sleep(1.0)
                server.start()
                wait_for(
                    lambda: (
                        client.exists(keys.done(SOURCE, "evt_linger")) and unsettled(client) == 0
                    ),
                    timeout=20,
                    what="the event to be resolved",
                )
            client.close()
            assert ledger.effects() == {"evt_linger": 1}, ledger.runs("evt_linger")
            ledger.close()

    def test_worker_that_ran_fine_then_died_is_replaced_promptly_every_time(
        self, redis_url: str, tmp_path: Path
    ) -> None:
        """A worker process killed after running healthily for a while is replaced within
        a second and a half, however many times that happens."""
        with EmbeddedRedis(tmp_path / "ledger") as ledger_server:
            config = write_pipeline_config(tmp_path / "hookline.toml", redis_url)
            fleet = WorkerFleet(config, tmp_path / "work.log", ledger_server.url, processes=1)
            replaced_in = []
            with fleet:
                for _ in range(3):
                    [victim] = fleet.wait_for_workers(timeout=40)
                    time.sleep(HEALTHY_RUN + 0.5)  # past its start-up
                    killed = time.monotonic()
                    os.kill(victim, signal.SIGKILL)
                    wait_for(
                        functools.partial(_replaced, fleet, victim),
                        timeout=40,
                        what="a replacement worker",
                    )
                    replaced_in.append(round(time.monotonic() - killed, 1))
        assert max(replaced_in) < 1.5, replaced_in


def _replaced(fleet: WorkerFleet, victim: int) -> bool:
    """Whether a worker other than ``victim`` runs in ``fleet``."""
    return bool(set(fleet.workers()) - {victim})


def delivery(
    event_id: str, status: int | None = 202, error: str | None = None, at: float = 10.0
) -> Delivery:
    """A delivery of ``event_id`` answered ``status`` (or failed with ``error``)."""
    return Delivery(event_id, False, "http://127.0.0.1/hooks/test", at, at + 0.01, status, error)


class TestReconcile:
    def test_clean_run_has_no_problems(self) -> None:
        """Acknowledged events handled once or dead-lettered, and refused requests, are clean."""
        deliveries = [
            delivery("a"),
            delivery("b"),
            delivery("c", None, REFUSED),
            delivery("d", 503),
        ]
        result = reconcile(deliveries, {"a": 1}, {}, {"b"}, {"b": 4}, [])
        assert result.problems() == []
        assert (result.handled_once, result.dead_lettered) == (1, 1)
        assert result.errors == {REFUSED: 1}

    def test_acknowledged_event_never_handled_is_lost(self) -> None:
        """A 2xx whose event neither took effect nor sits in the dead-letter queue is reported."""
        result = reconcile([delivery("a"), delivery("a", 200)], {}, {}, set(), {}, [])
        assert result.lost == ["a"]
        assert result.problems()

    def test_status_outside_4xx_and_503_is_reported(self) -> None:
        """A 500 or 502 breaks the promise even though the provider would retry."""
        result = reconcile([delivery("a", 500)], {}, {}, set(), {}, [])
        assert result.bad_status == [("a", 500)]
        assert result.problems()

    def test_request_without_answer_in_time_is_reported(self) -> None:
        """A request the receiver held without answering is a problem; a refused one is not."""
        result = reconcile([delivery("a", None, TIMEOUT)], {}, {}, set(), {}, [])
        assert result.problems()

    def test_rerun_after_worker_kill_in_the_window_is_explained(self) -> None:
        """A second run after the first run's worker was SIGKILLed just after the effect is
        put down to the kill, not reported as a problem."""
        runs = {"a": [Run(100, 10.0, 1), Run(200, 16.0, 1)]}
        kill = Fault(WORKER_KILL, 10.01, 10.01, pids=(100,))
        result = reconcile([delivery("a")], {"a": 2}, runs, set(), {}, [kill])
        assert result.problems() == []
        assert result.reruns == {"a": 1}

    def test_rerun_without_a_kill_in_the_window_is_a_problem(self) -> None:
        """A second run that no SIGKILL of the first run's worker explains (another worker
        killed, or the same one long after) is reported."""
        runs = {"a": [Run(100, 10.0, 1), Run(200, 16.0, 1)]}
        unrelated = Fault(WORKER_KILL, 10.01, 10.01, pids=(300,))
        late = Fault(WORKER_KILL, 14.0, 14.0, pids=(100,))
        result = reconcile([delivery("a")], {"a": 2}, runs, set(), {}, [unrelated, late])
        assert result.unexplained_reruns == {"a": WORKER_KILL}
        assert result.problems()

    def test_rerun_after_a_redis_restart_is_a_problem(self) -> None:
        """A Redis restart right after a handler's effect does not excuse a second run: the
        worker must write its done marker once Redis is back."""
        runs = {"a": [Run(100, 10.0, 1), Run(100, 16.0, 1)]}
        restart = Fault(REDIS_RESTART, 10.05, 10.5)
        result = reconcile([delivery("a")], {"a": 2}, runs, set(), {}, [restart])
        assert result.unexplained_reruns == {"a": REDIS_RESTART}
        assert result.problems()

    def test_errors_are_attributed_to_the_latest_fault_covering_them(self) -> None:
        """Each non-2xx answer is counted under the fault that was under way when it came."""
        faults = [Fault(WORKER_KILL, 9.0, 9.0), Fault(REDIS_RESTART, 9.9, 10.2)]
        result = reconcile(
            [delivery("a", 503), delivery("b", 503, at=50.0)], {}, {}, set(), {}, faults
        )
        assert result.per_fault[REDIS_RESTART]["503"] == 1
        assert result.per_fault["no fault"]["503"] == 1
