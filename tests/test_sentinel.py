"""High availability: a pipeline on a Sentinel group follows a failover and loses nothing."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hookline.redis import keys
from hookline.redis.connection import sync_client
from hookline.redis.embedded import EmbeddedRedis
from tests.cluster import (
    SOURCE,
    Ledger,
    Receiver,
    SentinelServer,
    WorkerFleet,
    write_pipeline_config,
)
from tests.faultsuite import collect, settle, unsettled
from tests.load import SteadyLoad, body_for, deliver
from tests.reconcile import FAILOVER, Fault
from tests.worker_support import wait_for

SERVICE = "hl"
#: A primary waits 5 s by default before a full sync, hoping more replicas join.
NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")


def _exists(client: redis.Redis, key: str) -> bool:
    try:
        return bool(client.exists(key))
    except redis.RedisError:
        return False


def _linked(replica: EmbeddedRedis) -> bool:
    info = redis.Redis(port=replica.port).info("replication")
    return info.get("master_link_status") == "up"


class Group:
    """A primary, two replicas and one Sentinel, all on loopback."""

    def __init__(self, directory: Path) -> None:
        self.primary = EmbeddedRedis(directory / "primary", extra=NO_SYNC_DELAY)
        self.primary.start()
        replicaof = ("--replicaof", "127.0.0.1", str(self.primary.port), *NO_SYNC_DELAY)
        self.replicas = [
            EmbeddedRedis(directory / f"replica-{i}", extra=replicaof) for i in range(2)
        ]
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            wait_for(functools.partial(_linked, replica), timeout=10, what="a replica to sync")
        # Started after the replicas are linked, so its first INFO to the primary lists them.
        self.sentinel = SentinelServer(directory / "sentinel", SERVICE, self.primary.port)
        self.sentinel.start()
        wait_for(
            lambda: self.sentinel.healthy_replicas() == len(self.replicas),
            timeout=15,
            what="the Sentinel to see both replicas",
        )

    def close(self) -> None:
        """Stop everything."""
        self.sentinel.stop()
        for server in [self.primary, *self.replicas]:
            server.close()


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    """A Sentinel-monitored primary with two replicas."""
    made = Group(tmp_path / "group")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """The handler's effects, in a Redis outside the Sentinel group."""
    with EmbeddedRedis(tmp_path / "ledger") as server:
        made = Ledger(server)
        yield made
        made.close()


class TestSentinelFailover:
    def test_pipeline_follows_a_failover_and_handles_every_acknowledged_event(
        self, group: Group, ledger: Ledger, tmp_path: Path
    ) -> None:
        """SIGKILL the primary under load: after promotion, and the old primary's return as a
        replica, events flow again, and every acknowledged event is handled (none lost).

        wait_replicas equals the number of replicas, so whichever replica Sentinel promotes
        has every acknowledged event. Workers wait for replicas only as long as
        wait_timeout, so an outcome written while replication lags can be lost with the
        primary and its event run again: re-runs are counted and printed, not failed
        (README, durability: handlers stay idempotent across a failover)."""
        config = write_pipeline_config(
            tmp_path / "hookline.toml",
            group.sentinel.url,
            server={"wait_replicas": len(group.replicas), "wait_timeout": 0.5},
        )
        receiver = Receiver(config, tmp_path / "serve.log")
        fleet = WorkerFleet(config, tmp_path / "work.log", ledger.url, processes=2)
        load = SteadyLoad(lambda: [receiver.url()], rate=60.0, seed=4)
        client = sync_client(group.sentinel.url)
        with receiver, fleet:
            fleet.wait_for_workers()
            load.start()
            try:
                wait_for(lambda: load.acknowledged_since(0) >= 120, what="load before the kill")
                killed_at = time.time()
                group.primary.stop(kill=True)
                promoted = {r.port for r in group.replicas}
                wait_for(
                    lambda: group.sentinel.primary_port() in promoted,
                    timeout=20,
                    what="the Sentinel to promote a replica",
                )
                promoted_at = time.time()
                group.primary.start()  # it comes back, and Sentinel makes it a replica
                wait_for(
                    lambda: load.acknowledged_since(promoted_at) >= 120,
                    timeout=20,
                    what="events to be acknowledged after the promotion",
                )
            finally:
                load.stop()
            settle(client, ledger, load.deliveries, timeout=30)
            faults = [Fault(FAILOVER, killed_at, promoted_at, "primary SIGKILLed")]
            result = collect(client, ledger, load.deliveries, faults)
        client.close()
        report = result.render() + f"\nfailover took {promoted_at - killed_at:.1f} s"
        print(report)
        broken = [p for p in result.problems() if "ran again" not in p]
        assert broken == [], report
        assert not result.lost, report

    def test_primary_lost_between_effect_and_done_marker_does_not_rerun(
        self, group: Group, ledger: Ledger, tmp_path: Path
    ) -> None:
        """A primary killed after a handler's effect but before its done marker is written:
        the worker writes the marker on the new primary and the event does not run again."""
        config = write_pipeline_config(
            tmp_path / "hookline.toml", group.sentinel.url, server={"wait_replicas": 1}
        )
        client = sync_client(group.sentinel.url)
        with (
            Receiver(config, tmp_path / "serve.log") as receiver,
            WorkerFleet(config, tmp_path / "work.log", ledger.url, processes=1) as fleet,
        ):
            fleet.wait_for_workers()
            assert deliver(receiver.url(), body_for("evt_linger", linger=0.5)) == 202
            wait_for(lambda: "evt_linger" in ledger.effects(), what="the handler's effect")
            group.primary.stop(kill=True)  # the handler still lingers: no done marker yet
            wait_for(
                lambda: group.sentinel.primary_port() != group.primary.port,
                timeout=20,
                what="the Sentinel to promote a replica",
            )
            wait_for(
                lambda: _exists(client, keys.done(SOURCE, "evt_linger")) and unsettled(client) == 0,
                timeout=30,
                what="the event to be resolved on the new primary",
            )
        client.close()
        assert ledger.effects() == {"evt_linger": 1}, ledger.runs("evt_linger")
