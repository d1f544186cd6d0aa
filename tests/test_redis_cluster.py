"""The Redis Cluster the tests run against: its shape, and that it serves and replicates."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import redis

from tests.cluster import RedisCluster
from tests.live import one_error_line, run
from tests.worker_support import wait_for


def _owner(cluster: RedisCluster, key: str) -> int:
    """The port of the primary that serves ``key``'s slot, from CLUSTER SLOTS."""
    with contextlib.closing(cluster.client(cluster.primaries()[0])) as client:
        slot = int(client.cluster("KEYSLOT", key))
        ranges = client.cluster("SLOTS")
    return next(int(r[2][1]) for r in ranges if int(r[0]) <= slot <= int(r[1]))


class TestClusterFixture:
    def test_three_primaries_each_with_one_replica_serve_every_slot(
        self, cluster: RedisCluster
    ) -> None:
        """The fixture's cluster has 3 primaries, each with 1 replica of its own, and all
        16384 slots are served, split over the three primaries."""
        roles = cluster.roles()
        primaries = sorted(port for port, primary in roles.items() if primary is None)
        assert len(primaries) == 3
        assert sorted(primary for primary in roles.values() if primary is not None) == primaries
        with contextlib.closing(cluster.client(cluster.primaries()[0])) as client:
            ranges = client.cluster("SLOTS")
        assert sum(int(r[1]) - int(r[0]) + 1 for r in ranges) == 16384
        assert sorted({int(r[2][1]) for r in ranges}) == primaries

    def test_a_key_lives_on_the_primary_owning_its_slot_and_reaches_its_replica(
        self, cluster: RedisCluster
    ) -> None:
        """A write to a primary that does not own the key's slot is refused with MOVED; on
        the owner it is stored, no other primary holds it, and the owner's replica gets it."""
        owner = _owner(cluster, "fixture:probe")
        for primary in cluster.primaries():
            with contextlib.closing(cluster.client(primary)) as node:
                if primary.port != owner:
                    with pytest.raises(redis.exceptions.MovedError, match=f":{owner}$"):
                        node.set("fixture:probe", "1")
        owning = next(p for p in cluster.primaries() if p.port == owner)
        with contextlib.closing(cluster.client(owning)) as node:
            node.set("fixture:probe", "1")
        held = {}
        for primary in cluster.primaries():
            with contextlib.closing(cluster.client(primary)) as node:
                held[primary.port] = node.dbsize()
        assert held == {port: int(port == owner) for port in held}
        with contextlib.closing(cluster.client(cluster.replica_of(owning))) as node:
            node.readonly()
            wait_for(lambda: node.get("fixture:probe") == "1", timeout=5, what="the replica")


def _config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "hookline.toml"
    config.write_text(
        f'[redis]\nurl = "{url}"\n[console]\ntoken = "{"t" * 32}"\n'
        '[sources.s]\nscheme = "hmac"\nsecrets = ["s"]\nsignature_header = "X-Sig"\n'
    )
    return config


class TestClusterNodeBehindAPlainUrl:
    @pytest.mark.parametrize(
        "command",
        [
            ["serve", "--port", "0"],
            ["serve", "--port", "0", "-n", "2"],
            ["work", "--burst"],
            ["console", "--port", "0"],
            ["dlq", "stats"],
        ],
        ids=lambda argv: " ".join(argv),
    )
    def test_a_command_refuses_it_at_start_up_with_one_line(
        self, cluster: RedisCluster, tmp_path: Path, command: list[str]
    ) -> None:
        """A redis:// URL naming one node of a Redis Cluster stops the command before it
        starts: one line saying the URL is a cluster node (password masked), exit 1."""
        url = f"redis://:hush@127.0.0.1:{cluster.primaries()[0].port}/0"
        done = run(*command, "--config", str(_config(tmp_path, url)), timeout=60)
        line = one_error_line(done)
        assert "is a node of a Redis Cluster" in line, line
        assert "hush" not in done.stdout + done.stderr

    def test_check_reports_it_as_an_error(self, cluster: RedisCluster, tmp_path: Path) -> None:
        """`hookline check` names the cluster node as an error and exits 1."""
        url = f"redis://127.0.0.1:{cluster.primaries()[0].port}/0"
        done = run("check", "--config", str(_config(tmp_path, url)), timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "is a node of a Redis Cluster" in done.stdout
