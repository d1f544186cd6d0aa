"""``hookline dev`` and the commands that find it, as real processes in temporary directories.

Each test starts ``hookline dev`` in a directory of its own (the embedded Redis, the
receiver, a worker and the console, all real processes) and drives it as a person would:
from other processes run in the same directory with no ``--config``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner

from hookline.cli.main import main
from hookline.config.defaults import DEFAULT_DEDUPE_WINDOW
from hookline.dlq.store import DeadLetters
from hookline.redis.embedded import EmbeddedRedis
from hookline.redis.marks import MarkState, mark_state
from tests.live import HOOKLINE, clean_env, holding_port, one_error_line, run

#: What a line of the banner looks like: two spaces, a name, its value.
_BANNER_LINE = re.compile(r"^  (configuration|Redis|receiver|worker|metrics|console)\s+(\S+)")


@dataclass
class Dev:
    """A running ``hookline dev``: its process, directory and what its banner said."""

    proc: subprocess.Popen[bytes]
    cwd: Path
    out: Path
    err: Path
    shown: dict[str, str]

    @property
    def receiver_port(self) -> int:
        """The receiver's port, from the banner."""
        return int(self.shown["receiver"].split(":")[2].split("/")[0])

    def config(self) -> dict[str, object]:
        """``.hookline/dev.toml`` as written."""
        return tomllib.loads((self.cwd / ".hookline" / "dev.toml").read_text())

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Send ``sig`` (Ctrl-C by default) and return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@contextlib.contextmanager
def started_dev(cwd: Path, *args: str, within: float = 60) -> Iterator[Dev]:
    """``hookline dev ARGS`` in ``cwd``, up once its banner is printed; stopped after."""
    cwd.mkdir(parents=True, exist_ok=True)
    out, err = cwd / "dev.out", cwd / "dev.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [HOOKLINE, "dev", *args],
            cwd=cwd,
            env=clean_env(),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # its own group: a Ctrl-C at a terminal reaches it all
        )
    try:
        deadline = time.monotonic() + within
        while "Ctrl-C stops everything." not in out.read_text():
            assert proc.poll() is None, f"dev exited {proc.returncode}: {err.read_text()}"
            assert time.monotonic() < deadline, f"dev did not start: {err.read_text()}"
            time.sleep(0.1)
        shown = {}
        for line in out.read_text().splitlines():
            if found := _BANNER_LINE.match(line):
                shown[found.group(1)] = found.group(2)
        yield Dev(proc, cwd, out, err, shown)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` without following redirects: status, headers, body."""
    host_port = url.split("/")[2]
    host, port = host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/" + url.split("/", 3)[3])
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """`hookline dev` with its demo configuration, for the tests that only look at it."""
    with started_dev(tmp_path_factory.mktemp("demo")) as dev:
        yield dev


class TestDemo:
    def test_runs_the_pipeline_then_stops_cleanly_on_ctrl_c(self, tmp_path: Path) -> None:
        """`hookline dev` embeds Redis, takes `hookline send demo` from its directory with
        no flags, and Ctrl-C stops everything and removes its configuration file."""
        with started_dev(tmp_path, "--data-dir", "data") as dev:
            sent = run("send", "demo", "--type", "order.created", cwd=tmp_path)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert f"127.0.0.1:{dev.receiver_port}/hooks/demo -> 202" in sent.stdout
            event_id = orjson.loads(sent.stdout.splitlines()[1])["id"]
            redis_url = dev.shown["Redis"]
            embedded = redis.Redis.from_url(redis_url)
            try:  # the worker may have taken the job already; the dedupe mark stays
                state = mark_state(embedded, "demo", event_id, DEFAULT_DEDUPE_WINDOW)
                assert state in (MarkState.SEEN, MarkState.DONE)
            finally:
                embedded.close()
            assert (tmp_path / "data" / "redis").is_dir()
            started = time.monotonic()
            os.killpg(dev.proc.pid, signal.SIGINT)  # Ctrl-C: to the terminal's foreground group
            assert dev.proc.wait(timeout=15) == 0, dev.err.read_text()
            assert time.monotonic() - started < 5
        assert not (tmp_path / ".hookline" / "dev.toml").exists()
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(redis_url, socket_connect_timeout=0.5).ping()
        assert "receiver stopped" in dev.err.read_text()

    def test_writes_the_configuration_it_runs_with(self, demo: Dev) -> None:
        """`.hookline/dev.toml` holds the embedded Redis URL, the ports dev chose and a
        generated console token, readable by its owner only; the banner never shows it."""
        dev, tmp_path = demo, demo.cwd
        path = tmp_path / ".hookline" / "dev.toml"
        assert dev.shown["configuration"] == str(path)
        assert path.stat().st_mode & 0o777 == 0o600
        written = dev.config()
        assert written["redis"] == {"url": dev.shown["Redis"]}
        assert written["server"]["port"] == dev.receiver_port  # type: ignore[index]
        metrics = written["metrics"]
        assert isinstance(metrics, dict)
        for port in (metrics["receiver_port"], metrics["worker_port"]):
            assert port not in (0, 9101, 9102)
            assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200
        console = written["console"]
        assert isinstance(console, dict)
        assert console["host"] == "127.0.0.1" and len(console["token"]) >= 32
        assert console["token"] not in dev.out.read_text() + dev.err.read_text()

    def test_other_commands_use_it_and_say_so(self, demo: Dev) -> None:
        """`dlq`, `check` and `console` in dev's directory use its file with no flags, each
        saying so in one line on stderr."""
        dev, tmp_path = demo, demo.cwd
        stats = run("dlq", "stats", cwd=tmp_path)
        assert stats.returncode == 0, stats.stderr
        assert "the dead-letter queue is empty" in stats.stdout
        assert stats.stderr.splitlines() == [
            "hookline: using .hookline/dev.toml, written by `hookline dev` "
            "(--config FILE for another)"
        ]
        check = run("check", cwd=tmp_path)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "ok: handlers hookline.workers.demo: 1 route: */*" in check.stdout
        assert f"ok: Redis at {dev.shown['Redis']} answers" in check.stdout
        assert check.stderr.count("using .hookline/dev.toml") == 1
        # dev serves the console already: a second one says where, in one line.
        second = run("console", cwd=tmp_path)
        port = dev.config()["console"]["port"]  # type: ignore[index]
        assert one_error_line(second) == (
            f"Error: `hookline dev` serves the console here already, at "
            f"http://127.0.0.1:{port}/ (its login link, or console.token in "
            ".hookline/dev.toml); --port PORT for another"
        )

    def test_console_link_logs_in_once(self, demo: Dev) -> None:
        """The printed console URL logs a browser in (a strict, HttpOnly cookie), once."""
        link = demo.shown["console"]
        assert re.fullmatch(
            r"http://127\.0\.0\.1:\d+/login\?link=\d+\.[0-9a-f]{32}\.[0-9a-f]{64}", link
        )
        status, headers, _ = get(link)
        assert status == 303 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        base = link.split("/login")[0]
        conn = http.client.HTTPConnection(
            base.split("//")[1].split(":")[0], int(base.rsplit(":", 1)[1])
        )
        conn.request("GET", "/", headers={"Cookie": cookie.split(";")[0], "Accept": "text/html"})
        assert conn.getresponse().status == 200
        conn.close()
        assert get(link)[0] == 401, "a login link works once"

    def test_second_dev_in_the_same_directory_is_one_line(self, demo: Dev) -> None:
        """A second `hookline dev` where one runs is refused in one line naming its pid."""
        dev, tmp_path = demo, demo.cwd
        second = run("dev", cwd=tmp_path)
        assert one_error_line(second) == (
            f"Error: another `hookline dev` is running in this directory "
            f"(pid {dev.proc.pid}): stop it first, or start this one in another directory"
        )
        assert dev.proc.poll() is None and (tmp_path / ".hookline" / "dev.toml").exists()

    def test_second_dev_elsewhere_picks_other_ports(self, demo: Dev, tmp_path: Path) -> None:
        """A second `hookline dev` in another directory runs too: the ports dev chose
        itself (the demo's 8080 and 8081 included) do not clash, and each directory's
        `hookline send` reaches its own receiver."""
        with started_dev(tmp_path) as second:
            assert second.receiver_port != demo.receiver_port
            for table in ("metrics", "console"):
                assert second.config()[table] != demo.config()[table]
            for dev in (demo, second):
                sent = run("send", "demo", cwd=dev.cwd)
                assert sent.returncode == 0 and f":{dev.receiver_port}/" in sent.stdout


#: A first project, as the README's walkthrough builds it.
SHOP_HANDLERS = """
from hookline import Event, PermanentError, on

from shop.orders import record


@on("shop", "order.created")
def order_created(event: Event) -> None:
    order = event.json()["data"]
    if order.get("total", 0) < 0:
        raise PermanentError(f"order {order.get('number')} has a negative total")
    record(event.id, order)
"""

#: Where the project's handler records what it did (a stand-in for its database).
SHOP_ORDERS = """
import os

import redis


def record(event_id: str, order: dict) -> None:
    client = redis.Redis.from_url(os.environ["HOOKLINE_REDIS_URL"])
    client.hset("shop:orders", event_id, order.get("number", "?"))
    client.close()
"""

SHOP_CONFIG = """
[sources.shop]
scheme = "hmac"
secrets = ["change-me"]
signature_header = "X-Shop-Signature"

[workers]
handlers = ["shop.handlers"]

[workers.retry]
max_attempts = 3
base_delay = "100ms"
"""


def shop(directory: Path, config: str = SHOP_CONFIG) -> Path:
    """Lay out the walkthrough's project in ``directory``: its package and ``mine.toml``."""
    (directory / "shop").mkdir(parents=True)
    (directory / "shop" / "__init__.py").write_text("")
    (directory / "shop" / "handlers.py").write_text(SHOP_HANDLERS)
    (directory / "shop" / "orders.py").write_text(SHOP_ORDERS)
    (directory / "mine.toml").write_text(config)
    return directory / "mine.toml"


def wait_for(condition: Callable[[], object], within: float = 20) -> None:
    """Poll ``condition`` until it is true."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


class TestYourFirstProject:
    def test_walkthrough(self, tmp_path: Path) -> None:
        """The README's first project: its handler runs under `hookline dev --config
        mine.toml` with an embedded Redis, a failure is dead-lettered, and `dlq list` and
        `dlq show SOURCE:EVENT_ID` find it from the same directory with no flags."""
        shop(tmp_path)
        check = run("check", "--config", "mine.toml", cwd=tmp_path)
        assert "ok: handlers shop.handlers: 1 route: shop/order.created" in check.stdout
        assert "error: redis.url is not set" in check.stdout, "no Redis before dev runs"
        with started_dev(tmp_path, "--config", "mine.toml") as dev:
            assert dev.shown["Redis"].startswith("redis://127.0.0.1:")
            assert "(embedded)" in dev.out.read_text()
            assert "hookline send shop --type order.created    #" in dev.out.read_text()
            good = run(
                "send",
                "shop",
                "--type",
                "order.created",
                "--data",
                '{"data": {"number": 1, "total": 5}}',
                cwd=tmp_path,
            )
            assert good.returncode == 0, good.stdout + good.stderr
            good_id = orjson.loads(good.stdout.splitlines()[1])["id"]
            client = redis.Redis.from_url(dev.shown["Redis"])
            wait_for(lambda: client.hget("shop:orders", good_id) == b"1")
            bad = run(
                "send",
                "shop",
                "--type",
                "order.created",
                "--data",
                '{"data": {"number": 2, "total": -1}}',
                cwd=tmp_path,
            )
            bad_id = orjson.loads(bad.stdout.splitlines()[1])["id"]
            wait_for(lambda: DeadLetters(client).count() == 1)
            done = run("dlq", "list", "--json", cwd=tmp_path)
            listed = [orjson.loads(line) for line in done.stdout.splitlines()]
            assert [row["event_id"] for row in listed] == [bad_id]
            assert listed[0]["error_type"] == "PermanentError"
            shown = run("dlq", "show", f"shop:{bad_id}", cwd=tmp_path)
            assert shown.returncode == 0, shown.stderr
            assert "order 2 has a negative total" in shown.stdout
            client.close()
            assert dev.stop() == 0

    def test_configured_redis_is_used_and_its_password_never_shown(self, tmp_path: Path) -> None:
        """With redis.url in the user's file, dev embeds no Redis, uses that one, and shows
        its URL with the password masked; the file it writes keeps the real URL."""
        with EmbeddedRedis() as server:
            with redis.Redis(port=server.port) as admin:
                admin.config_set("requirepass", "s3cret-pw")
            url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
            shop(tmp_path, f'[redis]\nurl = "{url}"\n{SHOP_CONFIG}')
            with started_dev(tmp_path, "--config", "mine.toml") as dev:
                assert dev.shown["Redis"] == f"redis://***@127.0.0.1:{server.port}/0"
                assert "(embedded)" not in dev.out.read_text()
                assert "s3cret-pw" not in dev.out.read_text() + dev.err.read_text()
                assert dev.config()["redis"] == {"url": url}
                stats = run("dlq", "stats", cwd=tmp_path)
                assert stats.returncode == 0 and "s3cret-pw" not in stats.stdout + stats.stderr
            assert server.process is not None and server.process.poll() is None, "not ours"


class TestBadInput:
    def test_missing_configuration_file(self, tmp_path: Path) -> None:
        """`dev --config` naming no file is one line, exit 1, and nothing is started."""
        done = run("dev", "--config", "nope.toml", cwd=tmp_path)
        assert one_error_line(done) == "Error: configuration file nope.toml does not exist"
        assert not (tmp_path / ".hookline" / "dev.toml").exists()

    def test_unimportable_handler_module(self, tmp_path: Path) -> None:
        """A handler module that cannot be imported is named in one line before anything starts."""
        config = shop(tmp_path, SHOP_CONFIG.replace("shop.handlers", "shop.missing"))
        done = run("dev", "--config", config.name, cwd=tmp_path)
        assert one_error_line(done) == (
            "Error: workers.handlers: cannot import 'shop.missing': "
            "ModuleNotFoundError(\"No module named 'shop.missing'\")"
        )

    @pytest.mark.parametrize(
        ("table", "key", "flag"),
        [("server", "port", False), ("server", "port", True), ("metrics", "worker_port", False)],
    )
    def test_port_in_use_names_what_chose_it(
        self, tmp_path: Path, table: str, key: str, flag: bool
    ) -> None:
        """A port the user chose that is taken is one line naming the port and the key (or
        flag) that chose it, exit 1, before anything starts."""
        with holding_port() as holder:
            port = holder.getsockname()[1]
            config = SHOP_CONFIG if flag else f"{SHOP_CONFIG}\n[{table}]\n{key} = {port}\n"
            shop(tmp_path, config)
            args = ["--port", str(port)] if flag else []
            done = run("dev", "--config", "mine.toml", *args, cwd=tmp_path)
        what = "--port" if flag else f"{table}.{key} in mine.toml"
        assert one_error_line(done) == (
            f"Error: port {port} ({what}) is already in use on 127.0.0.1: "
            "stop what listens there or choose another port"
        )
        assert not (tmp_path / ".hookline" / "dev.toml").exists()

    @pytest.mark.parametrize("command", [["dlq", "stats"], ["console"], ["check"]])
    def test_no_configuration_and_no_dev_is_one_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
    ) -> None:
        """Without --config, HOOKLINE_CONFIG or a running dev, each says what to do in one
        line, exit 1 (in-process: the same command code, without a process start each)."""
        monkeypatch.chdir(tmp_path)
        unset: dict[str, str | None] = {"HOOKLINE_CONFIG": None, "HOOKLINE_REDIS_URL": None}
        result = CliRunner().invoke(main, command, env=unset)
        # A ClickException exits through SystemExit(1); anything else would be a bug.
        assert isinstance(result.exception, SystemExit) and result.exit_code == 1
        (line,) = result.stderr.splitlines()
        assert line.startswith("Error: ") and "start `hookline dev` in this directory" in line

    def test_file_left_by_a_dead_dev_is_used_with_a_warning(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        """A `.hookline/dev.toml` no running dev holds (dev was killed) is still used, and
        the note says that no dev runs there."""
        (tmp_path / ".hookline").mkdir()
        (tmp_path / ".hookline" / "dev.toml").write_text(f'[redis]\nurl = "{redis_url}"\n')
        done = run("dlq", "stats", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines() == [
            "hookline: using .hookline/dev.toml, written by `hookline dev` (--config FILE for "
            "another); no `hookline dev` runs here now, its Redis may be gone"
        ]
