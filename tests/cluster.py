"""A whole pipeline as real processes: receivers, worker fleets, a ledger, a Sentinel.

Fault tests and ``bench/faults.py`` build on these. Every process writes its output to a
file (never a pipe that nobody reads), so a long run cannot block on logging.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson
import redis

from hookline.errors import EmbeddedRedisError
from hookline.redis.connection import as_str
from hookline.redis.embedded import EmbeddedRedis, find_redis_server, free_port
from tests.ledger_handlers import EFFECTS, FAILURES, LEDGER_ENV, runs_key
from tests.live import HOOKLINE, clean_env, wait_until_healthy
from tests.worker_support import children_of

#: The signed source every pipeline test posts to: generic HMAC, id and type in the body.
SOURCE = "test"
SECRET = "fault-secret"
SIGNATURE_HEADER = "X-Sig"


def _toml_table(name: str, values: Mapping[str, Any]) -> list[str]:
    return [f"[{name}]", *(f"{k} = {orjson.dumps(v).decode()}" for k, v in values.items())]


def write_pipeline_config(
    path: Path,
    redis_url: str,
    *,
    server: Mapping[str, Any] | None = None,
    workers: Mapping[str, Any] | None = None,
    retry: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
) -> Path:
    """Write a configuration with the ``test`` source (plus ``source``'s keys) routed to
    the ledger handler."""
    lines = _toml_table("redis", {"url": redis_url})
    lines += _toml_table("server", dict(server or {}))
    lines += _toml_table(
        f"sources.{SOURCE}",
        {
            "scheme": "hmac",
            "secrets": [SECRET],
            "signature_header": SIGNATURE_HEADER,
            **(source or {}),
        },
    )
    lines += _toml_table("workers", {"handlers": ["tests.ledger_handlers"], **(workers or {})})
    lines += _toml_table(
        "workers.retry",
        {"base_delay": 0.05, "max_delay": 0.2, "max_attempts": 4, **(retry or {})},
    )
    path.write_text("\n".join(lines) + "\n")
    return path


class HooklineProcess:
    """One ``hookline`` command as a process, its output appended to ``log``."""

    def __init__(self, argv: list[str], log: Path, env: Mapping[str, str]) -> None:
        self.argv = [HOOKLINE, *argv]
        self.log = log
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (the supervisor's, for a worker fleet)."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the process."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )

    def send(self, sig: int) -> None:
        """Send ``sig`` without waiting."""
        assert self.proc is not None, "not started"
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the exit; returns the exit code."""
        assert self.proc is not None, "not started"
        return self.proc.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait; kill it if it outlives ``timeout``. Returns the exit code."""
        proc = self.proc
        assert proc is not None, "not started"
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise

    def output(self) -> str:
        """Everything the process has written so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.alive():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop()


class Receiver(HooklineProcess):
    """``hookline serve`` on a fixed loopback port, so that a restart keeps its address
    (with ``processes``, that many receiver processes under one supervisor)."""

    def __init__(
        self, config: Path, log: Path, *, port: int | None = None, processes: int | None = None
    ) -> None:
        self.port = port or free_port()
        argv = ["serve", "--config", str(config), "--port", str(self.port)]
        super().__init__(argv + (["-n", str(processes)] if processes else []), log, {})
        self.env = clean_env()
        self.processes = processes or 1

    def children(self) -> list[int]:
        """The pids of the receiver processes under the supervisor, running now."""
        return children_of(self.pid) if self.alive() else []

    def url(self, source: str = SOURCE) -> str:
        """The hook URL of ``source``."""
        return f"http://127.0.0.1:{self.port}/hooks/{source}"

    def start(self) -> None:
        """Start and return once ``/healthz`` answers (and every process runs)."""
        super().start()
        assert self.proc is not None
        wait_until_healthy(self.port, self.proc)
        deadline = time.monotonic() + 15
        while self.processes > 1 and len(self.children()) < self.processes:
            assert time.monotonic() < deadline, f"{self.processes} receivers did not start"
            time.sleep(0.05)


class WorkerFleet(HooklineProcess):
    """``hookline work -n N``: a supervisor and its worker processes."""

    def __init__(self, config: Path, log: Path, ledger_url: str, *, processes: int) -> None:
        self.processes = processes
        super().__init__(["work", "--config", str(config), "-n", str(processes)], log, {})
        self.env = clean_env(**{LEDGER_ENV: ledger_url})

    def workers(self) -> list[int]:
        """The pids of the worker processes running now."""
        return children_of(self.pid) if self.alive() else []

    def wait_for_workers(self, timeout: float = 20.0) -> list[int]:
        """Wait until every worker process runs; returns their pids."""
        deadline = time.monotonic() + timeout
        while len(pids := self.workers()) < self.processes:
            assert time.monotonic() < deadline, f"{self.processes} workers did not start"
            time.sleep(0.05)
        return pids


class Ledger:
    """The handler's effects, kept in a Redis of its own that no fault touches."""

    def __init__(self, server: EmbeddedRedis) -> None:
        self.server = server
        self.url = server.url
        self.client = redis.Redis.from_url(server.url)

    def effects(self) -> dict[str, int]:
        """Event id -> successful runs."""
        return {as_str(k): int(v) for k, v in self.client.hgetall(EFFECTS).items()}

    def failures(self) -> dict[str, int]:
        """Event id -> failed attempts."""
        return {as_str(k): int(v) for k, v in self.client.hgetall(FAILURES).items()}

    def runs(self, event_id: str) -> list[tuple[int, float, int]]:
        """(worker pid, time, attempt) of every successful run of an event, in order."""
        found = []
        for raw in self.client.lrange(runs_key(event_id), 0, -1):
            pid, at, attempt = as_str(raw).split()
            found.append((int(pid), float(at), int(attempt)))
        return found

    def close(self) -> None:
        """Close the client."""
        self.client.close()


class SentinelServer:
    """One ``redis-server --sentinel`` on loopback, monitoring ``service`` at ``primary_port``."""

    def __init__(
        self,
        directory: Path,
        service: str,
        primary_port: int,
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        self.directory = directory
        self.service = service
        self.port = free_port()
        self.conf = directory / "sentinel.conf"
        directory.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"logfile {directory / 'sentinel.log'}\n"
            f"sentinel monitor {service} 127.0.0.1 {primary_port} 1\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {service} 1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL naming this Sentinel's group."""
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}"

    def start(self, timeout: float = 10.0) -> None:
        """Start the Sentinel and wait until it answers PING."""
        self.proc = subprocess.Popen(
            [find_redis_server(), str(self.conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if self.client.ping():
                    return
            assert self.proc.poll() is None, "redis-server --sentinel exited at start"
            assert time.monotonic() < deadline, "the Sentinel did not answer"
            time.sleep(0.05)

    def primary_port(self) -> int:
        """The port of the primary the Sentinel names now."""
        address = self.client.sentinel_get_master_addr_by_name(self.service, return_responses=True)
        assert isinstance(address, tuple), "the Sentinel does not know the group"
        _host, port = address
        return int(port)

    def healthy_replicas(self) -> int:
        """Replicas the Sentinel knows of and considers up."""
        replicas = self.client.sentinel_slaves(self.service)
        return sum(1 for r in replicas if not r["is_sdown"])

    def stop(self) -> None:
        """Stop the Sentinel."""
        self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def _start_node(node: EmbeddedRedis) -> None:
    for attempt in range(3):  # a free port can be taken before the node binds it
        try:
            node.start()
            return
        except EmbeddedRedisError:
            if attempt == 2:
                raise
            node.port = free_port()


class RedisCluster:
    """A Redis Cluster of ``primaries`` primaries with one replica each, on loopback.

    Each node is an :class:`EmbeddedRedis` started with ``--cluster-enabled yes`` in a
    directory of its own; ``redis-cli --cluster create`` assigns the slots, and
    :meth:`start` returns once every node reports ``cluster_state:ok`` and every
    replica is in sync with its primary.
    """

    def __init__(self, directory: Path, *, primaries: int = 3, node_timeout_ms: int = 1000):
        self.directory = directory
        self.node_timeout_ms = node_timeout_ms
        self.nodes = [
            EmbeddedRedis(
                directory / f"node-{n}",
                extra=(
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    *("--cluster-node-timeout", str(node_timeout_ms)),
                    # A primary that lost its replica keeps serving its slots alone.
                    *("--cluster-require-full-coverage", "no"),
                    *("--cluster-replica-validity-factor", "0"),
                    *("--repl-diskless-sync-delay", "0"),
                ),
            )
            for n in range(2 * primaries)
        ]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every node."""
        return [("127.0.0.1", node.port) for node in self.nodes]

    def start(self, timeout: float = 30.0) -> None:
        """Start the nodes, create the cluster, and wait until it serves every slot."""
        with ThreadPoolExecutor(len(self.nodes)) as starting:  # each start waits for a PING
            list(starting.map(_start_node, self.nodes))
        beside = str(Path(find_redis_server()).with_name("redis-cli"))
        redis_cli = shutil.which("redis-cli") or beside
        done = subprocess.run(
            [
                redis_cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, f"cluster create failed:\n{done.stdout}{done.stderr}"
        self.wait_until_ok(timeout)

    def client(self, node: EmbeddedRedis) -> redis.Redis:
        """A plain client on one node (close it when done)."""
        return redis.Redis(port=node.port, socket_timeout=2, decode_responses=True)

    def roles(self) -> dict[int, int | None]:
        """Each live node's port -> the port of its primary (``None`` for a primary)."""
        found: dict[int, int | None] = {}
        for node in self.nodes:
            if node.process is None:
                continue
            with contextlib.closing(self.client(node)) as client:
                info = client.info("replication")
            found[node.port] = int(info["master_port"]) if info["role"] == "slave" else None
        return found

    def primaries(self) -> list[EmbeddedRedis]:
        """The nodes that are primaries now."""
        roles = self.roles()
        return [node for node in self.nodes if node.port in roles and roles[node.port] is None]

    def replica_of(self, primary: EmbeddedRedis) -> EmbeddedRedis:
        """The replica of ``primary``."""
        roles = self.roles()
        return next(node for node in self.nodes if roles.get(node.port) == primary.port)

    def wait_until_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node sees the cluster ok (all 16384 slots served) and
        every replica has finished its sync."""
        deadline = time.monotonic() + timeout
        while True:
            if self._ok():
                return
            assert time.monotonic() < deadline, "the Redis Cluster did not become ok"
            time.sleep(0.1)

    def _ok(self) -> bool:
        for node in self.nodes:
            if node.process is None:
                continue
            with contextlib.closing(self.client(node)) as client:
                try:
                    info = client.cluster("INFO")
                    replication = client.info("replication")
                except redis.RedisError:
                    return False
            if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != 16384:
                return False
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return False
        return True

    def flush(self) -> None:
        """Empty every primary (replicas follow)."""
        for node in self.primaries():
            with contextlib.closing(self.client(node)) as client:
                client.flushall()

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
