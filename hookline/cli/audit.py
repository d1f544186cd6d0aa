"""``hookline audit``, and the audit entries the ``hookline dlq`` commands write.

Every replay, purge, export and re-injection from the command line is recorded in the
audit log (:mod:`hookline.dlq.audit`) when it starts and when it ends, interrupted or
failed included, with the operating system's ``user@host``; the console records its own.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import click
import orjson
import redis

from hookline.cli.dlq_options import config_option, session
from hookline.dlq.audit import Action, AuditEntry, AuditLog, cli_user
from hookline.dlq.ops import Progress
from hookline.dlq.store import DeadLetters
from hookline.terminal import safe, safe_json


def _counts(progress: Progress | None) -> dict[str, int]:
    if progress is None:
        return {}
    return {
        "total": progress.total,
        "done": progress.done,
        "enqueued": progress.enqueued,
        "gone": progress.gone,
        "missing": len(progress.missing),
    }


@contextlib.contextmanager
def audited(
    dead_letters: DeadLetters,
    action: Action,
    selection: str,
    progress: Callable[[], Progress | None],
) -> Iterator[None]:
    """Record ``action`` on ``selection`` in the audit log: started now, and how it ended
    (done; interrupted by Ctrl-C; failed), with ``progress()``'s counts at each end."""
    log, who, op = AuditLog(dead_letters.client), cli_user(), secrets.token_hex(6)

    def record(state: str) -> None:
        log.record(AuditEntry(action, who, "cli", selection, state, _counts(progress()), op))

    record("started")
    state = "failed"
    try:
        yield
        state = "done"
    except SystemExit as exc:  # the commands exit through sys.exit: 0, 1 (missing ids), 130
        state = "interrupted" if exc.code == 130 else "done"
        raise
    except KeyboardInterrupt:
        state = "interrupted"
        raise
    finally:
        with contextlib.suppress(redis.RedisError):  # Redis may be what failed
            record(state)


def _row(entry: AuditEntry) -> list[str]:
    when = datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    counts = ", ".join(f"{k} {v}" for k, v in entry.counts.items() if v)
    cells = [entry.who, entry.via, entry.action, entry.state, entry.selection, counts]
    return [when, *(safe(cell) for cell in cells)]


@click.command()
@config_option
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def audit(config_path: str | None, limit: int, as_json: bool) -> None:
    """Who replayed, purged or exported dead letters, and when (newest first)."""
    with session(config_path) as dead_letters:
        entries = AuditLog(dead_letters.client).recent(limit)
    if as_json:
        for entry in entries:
            click.echo(safe_json(orjson.dumps(entry.to_dict()).decode()))
        return
    if not entries:
        click.echo("the audit log is empty")
        return
    header = ["WHEN (UTC)", "WHO", "VIA", "ACTION", "STATE", "SELECTION", "COUNTS"]
    rows = [header, *(_row(entry) for entry in entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())
