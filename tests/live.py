"""Live receivers on real sockets, for tests that cannot drive the asyncio test client.

:class:`ThreadedReceiver` serves ``create_app`` from an event loop of its own in a
background thread, so synchronous code (Hypothesis tests, blocking HTTP clients) can talk
to it. :class:`ServeProcess` runs ``hookline serve`` as a real process.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from aiohttp import web

from hookline.config.settings import CONFIG_ENV, REDIS_URL_ENV, Settings
from hookline.ingest.app import create_app
from hookline.logs import LogLine
from hookline.redis.embedded import free_port

#: The installed ``hookline`` console script of the interpreter running the tests.
HOOKLINE = str(Path(sys.executable).with_name("hookline"))


class ThreadedReceiver:
    """The receiver for ``settings`` on a free loopback port, served by a background thread."""

    def __init__(
        self, settings: Settings, redis_url: str, *, access_log: LogLine | None = None
    ) -> None:
        self._settings = settings
        self._redis_url = redis_url
        self._access_log = access_log
        self._thread = threading.Thread(target=self._run, name="threaded-receiver", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        app = create_app(self._settings, self._redis_url, access_log=self._access_log)
        runner = web.AppRunner(app, access_log=None)
        try:
            self._stopping = asyncio.Event()
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = int(runner.addresses[0][1])
        except BaseException as exc:  # handed to the thread that waits in start()
            self._error = exc
            self._ready.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_until_complete(self._stopping.wait())
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def start(self) -> None:
        """Start serving and return once the port is listening.

        Raises:
            RuntimeError: when the receiver could not start (the cause is chained).
        """
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("the threaded receiver did not start in 10 s")
        if self._error is not None:
            raise RuntimeError("the threaded receiver failed to start") from self._error

    def stop(self) -> None:
        """Stop serving, finish the cleanup contexts and join the thread."""
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        """A new blocking HTTP connection to the receiver."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def __enter__(self) -> ThreadedReceiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without hookline's variables, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (CONFIG_ENV, REDIS_URL_ENV, "HOOKLINE_CONSOLE_TOKEN")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 30,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``hookline`` command to completion, with hookline's variables
    cleared (and ``env`` added)."""
    return subprocess.run(
        [HOOKLINE, *args],
        env=clean_env(**(env or {})),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed on stderr (asserting it is one, no traceback)."""
    lines = [line for line in done.stderr.splitlines() if not line.startswith("hookline: using")]
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def holding_port() -> socket.socket:
    """A listening socket on a free loopback port (close it when done)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def wait_until_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Return once ``GET /healthz`` answers 200 on ``port``.

    Raises:
        AssertionError: when ``proc`` exits first or the port never answers.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the process exited with {proc.returncode} before serving")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise AssertionError(f"nothing answered on port {port} within {timeout} s")


class ServeProcess:
    """``hookline serve --config FILE --port PORT`` as a subprocess, up until stopped."""

    def __init__(self, config: Path, *, port: int | None = None) -> None:
        self.config = config
        self.port = port or free_port()
        self.log = config.with_name(f"{config.stem}-serve.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, source: str) -> str:
        """The hook URL of ``source`` on this receiver."""
        return f"http://127.0.0.1:{self.port}/hooks/{source}"

    def start(self) -> None:
        """Start the process and wait until it serves."""
        with self.log.open("wb") as log:  # a file, not a pipe: nothing must block on logging
            self.proc = subprocess.Popen(
                [HOOKLINE, "serve", "--config", str(self.config), "--port", str(self.port)],
                env=clean_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_healthy(self.port, self.proc)
        except AssertionError:
            self.stop()
            raise

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``, wait for the exit and return the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def output(self) -> str:
        """Everything the process has written to stdout and stderr so far."""
        return self.log.read_text(errors="replace")

    def __enter__(self) -> ServeProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
