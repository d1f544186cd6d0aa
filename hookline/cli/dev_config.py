"""What ``hookline dev`` runs with: its ports, and the configuration file it writes.

The file is the user's configuration (or the demo one) plus what ``dev`` chose: the
Redis URL, every port and a fresh console token. A port the user chose (``--port``, a
key in their file) must be free, or it is one line naming it; one ``dev`` chose itself
(the demo's receiver and console ports, the metrics ports) is replaced by a free one.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from hookline.errors import ListenError
from hookline.listen import listen
from hookline.redis.embedded import free_port

if TYPE_CHECKING:
    from hookline.config.settings import Settings


@dataclass(frozen=True, slots=True)
class Port:
    """A port ``dev`` has something listen on, and what chose it (named if it is taken)."""

    host: str
    number: int
    key: str


def _bind_check(host: str, port: int, key: str) -> None:
    """Raise :class:`ListenError` if ``host:port`` cannot be bound now."""
    listen(host, port, key).close()


def _choose(host: str, explicit: int | None, key: str, default: int | None) -> Port | None:
    """The port to use: ``explicit`` (the user's; must be free), else ``default`` if free,
    else any free one. ``explicit`` 0 means none."""
    if explicit is not None:
        if explicit == 0:
            return None
        _bind_check(host, explicit, key)
        return Port(host, explicit, key)
    if default is not None:
        try:
            _bind_check(host, default, key)
            return Port(host, default, key)
        except ListenError:
            pass
    return Port(host, free_port(), key)


def _explicit(raw: dict[str, Any], table: str, key: str) -> int | None:
    value = raw.get(table, {}).get(key) if isinstance(raw.get(table), dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Plan:
    """The ports ``dev`` runs with."""

    receiver: Port
    receiver_metrics: Port | None
    worker_metrics: Port | None
    console: Port
    #: A ``hookline send`` that reaches a handler, for the banner.
    send_example: str = "send SOURCE"


def plan_ports(
    raw: dict[str, Any], settings: Settings, origin: str | None, port: int | None
) -> Plan:
    """Choose every port, checking those the user chose: ``--port`` and the ports in the
    user's file (``origin``; ``None`` for the demo configuration, whose ports are dev's).

    Raises:
        ListenError: when a port the user chose is taken.
    """

    def key(table: str, name: str) -> str:
        return f"{table}.{name}" + (f" in {origin}" if origin else "")

    server_port = port
    if server_port is None and origin is not None:
        server_port = _explicit(raw, "server", "port")
    receiver = _choose(
        settings.server.host,
        server_port or None,  # 0 would be "any": dev has to know it, so it picks one
        "--port" if port is not None else key("server", "port"),
        settings.server.port,
    )
    assert receiver is not None
    metrics_host = settings.metrics.host
    console = _choose(
        "127.0.0.1", _explicit(raw, "console", "port") or None, key("console", "port"), 8081
    )
    assert console is not None
    return Plan(
        receiver=receiver,
        receiver_metrics=_choose(
            metrics_host,
            _explicit(raw, "metrics", "receiver_port"),
            key("metrics", "receiver_port"),
            None,
        ),
        worker_metrics=_choose(
            metrics_host,
            _explicit(raw, "metrics", "worker_port"),
            key("metrics", "worker_port"),
            None,
        ),
        console=console,
    )


def dev_settings(raw: dict[str, Any], redis_url: str, plan: Plan, token: str) -> dict[str, Any]:
    """The configuration ``dev`` runs with: the user's, plus Redis, the ports and the token."""
    data = copy.deepcopy(raw)
    data.setdefault("redis", {})["url"] = redis_url
    server = data.setdefault("server", {})
    server["port"] = plan.receiver.number
    server.setdefault("drain_delay", 0)  # no load balancer to drain: Ctrl-C stops at once
    metrics = data.setdefault("metrics", {})
    metrics["receiver_port"] = plan.receiver_metrics.number if plan.receiver_metrics else 0
    metrics["worker_port"] = plan.worker_metrics.number if plan.worker_metrics else 0
    data["console"] = {**data.get("console", {}), "host": "127.0.0.1", "port": plan.console.number}
    data["console"]["token"] = token
    return data


def write_dev_config(path: Path, data: dict[str, Any], origin: str) -> None:
    """Write ``data`` to ``path`` as TOML, readable by its owner only, in one rename."""
    header = (
        f"# Written by `hookline dev` (pid {os.getpid()}) from {origin}: the configuration\n"
        "# it runs with. `hookline dlq`, `console`, `check` and `send` run in this directory\n"
        "# use it when given no --config (nor HOOKLINE_CONFIG). It holds the console token,\n"
        "# so only you can read it; it is removed when `hookline dev` stops.\n\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(header + tomli_w.dumps(data))
    part.replace(path)
