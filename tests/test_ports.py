"""A port in use, for every server hookline starts: one line naming it and what chose it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookline.redis.embedded import free_port
from tests.live import holding_port, one_error_line, run

SOURCE = '[sources.shop]\nscheme = "hmac"\nsecrets = ["s"]\nsignature_header = "X-Sig"\n'


def in_use(port: int, what: str) -> str:
    """The line a command prints for ``port``, set by ``what``, being taken."""
    return (
        f"Error: port {port} ({what}) is already in use on 127.0.0.1: "
        "stop what listens there or choose another port"
    )


class TestPortInUse:
    @pytest.mark.parametrize("flag", [False, True])
    @pytest.mark.parametrize(
        ("command", "key"), [("serve", "server.port"), ("console", "console.port")]
    )
    def test_port_from_key_or_flag(
        self, tmp_path: Path, redis_url: str, command: str, key: str, flag: bool
    ) -> None:
        """`serve` and `console` name the key that set the port, or --port when it did."""
        table, name = key.split(".")
        with holding_port() as holder:
            port = holder.getsockname()[1]
            chosen = "" if flag else f"[{table}]\n{name} = {port}\n"
            config = tmp_path / "c.toml"
            config.write_text(f'[redis]\nurl = "{redis_url}"\n{SOURCE}{chosen}')
            args = ["--port", str(port)] if flag else []
            token = {"HOOKLINE_CONSOLE_TOKEN": "t0ken-long-enough-for-the-console"}
            done = run(command, "--config", str(config), *args, env=token)
        assert one_error_line(done) == in_use(port, "--port" if flag else key)

    def test_receiver_metrics_is_not_blamed_on_the_receiver_port(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        """With --port free and the metrics port taken, the line names metrics.receiver_port."""
        with holding_port() as holder:
            taken = holder.getsockname()[1]
            config = tmp_path / "c.toml"
            config.write_text(
                f'[redis]\nurl = "{redis_url}"\n[metrics]\nreceiver_port = {taken}\n{SOURCE}'
            )
            done = run("serve", "--config", str(config), "--port", str(free_port()))
        assert one_error_line(done) == in_use(taken, "metrics.receiver_port")

    def test_worker_metrics(self, tmp_path: Path, redis_url: str) -> None:
        """`hookline work` names metrics.worker_port, before starting any worker."""
        with holding_port() as holder:
            taken = holder.getsockname()[1]
            config = tmp_path / "c.toml"
            config.write_text(
                f'[redis]\nurl = "{redis_url}"\n[metrics]\nworker_port = {taken}\n{SOURCE}'
                '[workers]\nhandlers = ["hookline.workers.demo"]\n'
            )
            done = run("work", "--config", str(config), "--burst")
        assert one_error_line(done) == in_use(taken, "metrics.worker_port")
        assert "worker process started" not in done.stderr
