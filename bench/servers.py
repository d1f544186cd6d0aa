"""Run a receiver under test in a process of its own, and stop it cleanly."""

from __future__ import annotations

import contextlib
import http.client
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from bench import BenchError

#: Seconds a server gets to start answering, then to exit after SIGTERM.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def _answers(port: int) -> bool:
    """Whether ``GET /healthz`` on ``port`` answers 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


class Server:
    """A server process on ``port``; its output goes to ``log``.

    Used as a context manager: entering starts it and waits until ``/healthz`` answers;
    leaving sends SIGTERM and waits, so that it finishes (and commits) what is in flight.
    """

    def __init__(
        self, argv: Sequence[str], port: int, log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The server's process id (for a profiler)."""
        if self.process is None:
            raise BenchError("the server is not running")
        return self.process.pid

    def _failure(self, what: str) -> BenchError:
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        return BenchError(f"{' '.join(self.argv)}: {what}; its last output:\n{tail}")

    def start(self) -> None:
        """Start the process and wait until it answers.

        Raises:
            BenchError: when it exits or does not answer within :data:`START_TIMEOUT`.
        """
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._failure(f"exited with status {self.process.returncode} at start")
            if _answers(self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise self._failure(f"did not answer on port {self.port} in {START_TIMEOUT:g} s")

    def stop(self) -> None:
        """SIGTERM, then wait; SIGKILL if it does not exit in time."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
