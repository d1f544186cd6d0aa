"""Who replayed, purged or exported what, and when: the audit log, kept in Redis.

Every bulk operation on the dead-letter queue, from the console or the command line,
writes an entry when it starts and one when it ends (done, stopped, interrupted or
failed), with who ran it, what it selected and what it did. The log is a Redis stream
capped at :data:`KEEP` entries (``XADD MAXLEN ~``): appending is O(1), the newest are
read first, and it never grows without bound. The console's overview and ``hookline
audit`` show it.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import redis

from hookline.redis import keys
from hookline.redis.connection import as_str

#: Entries the log keeps (about: Redis trims whole nodes of the stream).
KEEP = 10_000

Action = Literal["replay", "purge", "export", "reinject"]


def cli_user() -> str:
    """Who runs a command: ``user@host`` from the operating system."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log.

    Attributes:
        action: ``replay``, ``purge``, ``export`` or ``reinject``.
        who: ``user@host`` for the command line, the session for the console.
        via: ``cli`` or ``console``.
        selection: what was selected, in words.
        state: ``started``, ``done``, ``stopped``, ``interrupted`` or ``failed``.
        counts: what was done so far (``total``, ``done``, ``gone``, ``missing``…).
        operation: ties an operation's entries together.
        at: unix time of the entry.
    """

    action: str
    who: str
    via: str
    selection: str
    state: str
    counts: Mapping[str, int] = field(default_factory=dict)
    operation: str = ""
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, object]:
        """The entry as plain data (``hookline audit --json``)."""
        return {
            "at": self.at,
            "action": self.action,
            "who": self.who,
            "via": self.via,
            "selection": self.selection,
            "state": self.state,
            "counts": dict(self.counts),
            "operation": self.operation,
        }


class AuditLog:
    """The audit log in the Redis of ``client``."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def record(self, entry: AuditEntry) -> None:
        """Append ``entry``, dropping the oldest past :data:`KEEP`."""
        fields = {k: orjson.dumps(v) for k, v in entry.to_dict().items()}
        self.client.xadd(keys.audit(), fields, maxlen=KEEP, approximate=True)  # type: ignore[arg-type]  # redis-py's stub wants str values; bytes are sent as is

    def recent(self, limit: int = 50) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first."""
        rows: Any = self.client.xrevrange(keys.audit(), count=limit)
        found = []
        for _, raw in rows:
            data = {as_str(k): orjson.loads(v) for k, v in raw.items()}
            try:
                found.append(
                    AuditEntry(
                        action=str(data["action"]),
                        who=str(data["who"]),
                        via=str(data["via"]),
                        selection=str(data["selection"]),
                        state=str(data["state"]),
                        counts={str(k): int(v) for k, v in dict(data["counts"]).items()},
                        operation=str(data.get("operation", "")),
                        at=float(data["at"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue  # not an entry of ours: skipped rather than failing the page
        return found
