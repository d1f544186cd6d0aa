"""Support for worker tests: settings, enqueueing, draining, and real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import redis

from hookline.config.settings import Settings, parse_settings
from hookline.envelope import Envelope
from hookline.redis import keys
from hookline.redis.commit import Enqueuer, Pending
from hookline.redis.connection import as_str
from hookline.workers.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = "tests.handlers_for_tests"


def worker_config(redis_url: str, **workers: Any) -> dict[str, Any]:
    """A configuration with the ``test`` source routed to the test handlers."""
    table: dict[str, Any] = {
        "handlers": [HANDLERS],
        "retry": {"base_delay": 0.01, "max_delay": 0.05, "max_attempts": 3},
        **workers,
    }
    return {
        "redis": {"url": redis_url},
        "sources": {
            "test": {"scheme": "hmac", "secrets": ["s"], "signature_header": "X-Sig"},
            "strict": {
                "scheme": "hmac",
                "secrets": ["s"],
                "signature_header": "X-Sig",
                "unhandled": "dead-letter",
            },
        },
        "workers": table,
    }


def worker_settings(redis_url: str, **workers: Any) -> Settings:
    """Parsed :func:`worker_config`."""
    os.environ["HOOKLINE_REDIS_URL"] = redis_url  # the test handlers record effects there
    return parse_settings(worker_config(redis_url, **workers), {})


def write_config(path: Path, redis_url: str, **workers: Any) -> Path:
    """Write :func:`worker_config` as TOML for a worker process."""
    lines = [f'[redis]\nurl = "{redis_url}"\n']
    cfg = worker_config(redis_url, **workers)
    for name, src in cfg["sources"].items():
        lines.append(f"[sources.{name}]")
        lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in src.items()]
    retry = cfg["workers"].pop("retry")
    lines.append("[workers]")
    lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in cfg["workers"].items()]
    lines.append("[workers.retry]")
    lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in retry.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def envelope(
    event_id: str, source: str = "test", event_type: str = "thing", **spec: Any
) -> Envelope:
    """An envelope whose body tells the test handler what to do."""
    return Envelope(
        source,
        event_id,
        event_type,
        time.time(),
        {"content-type": "application/json"},
        orjson.dumps(spec),
        "hookline",
    )


def enqueue(client: redis.Redis, *envelopes: Envelope, dedupe: bool = True) -> None:
    """Commit envelopes as the receiver would (one job for all of them)."""
    Enqueuer(client).commit([Pending(e, 3600.0 if dedupe else 0.0) for e in envelopes])


def pending_work(client: redis.Redis) -> int:
    """Jobs queued plus retries scheduled."""
    return int(client.llen(keys.rq_queue("hookline"))) + int(client.zcard(keys.retries()))


def drain(settings: Settings, redis_url: str, timeout: float = 20.0) -> None:
    """Run burst workers until no job and no retry is left."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while pending_work(client):
        assert time.monotonic() < deadline, "work did not drain in time"
        Worker(settings, redis_url, burst=True).run()
        time.sleep(0.01)
    client.close()


def effects(client: redis.Redis) -> dict[str, int]:
    """How many times each event took effect."""
    return {as_str(k): int(v) for k, v in client.hgetall("test:effects").items()}


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Poll until ``condition()`` is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)


class WorkerProcess:
    """``hookline work`` as a real process."""

    def __init__(self, config: Path, *args: str) -> None:
        env = {**os.environ}
        env.pop("HOOKLINE_CONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hookline", "work", "--config", str(config), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def signal(self, signum: signal.Signals) -> None:
        """Send a signal to the supervisor."""
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for exit; returns the exit code."""
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Stop it (warm), killing it if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


def children_of(pid: int) -> list[int]:
    """Process ids of ``pid``'s children (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def processes(config: Path, *args: str) -> Iterator[WorkerProcess]:
    """Yield a worker process and stop it afterwards (use with contextlib)."""
    proc = WorkerProcess(config, *args)
    try:
        yield proc
    finally:
        proc.stop()
