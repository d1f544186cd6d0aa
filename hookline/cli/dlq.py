"""``hookline dlq``: see what died and why, then replay, purge or export it.

A thin layer over :mod:`hookline.dlq.ops` (shared with the console): this module runs
the commands, prints, and turns failures into messages and exit codes. The options the
commands share, and the Redis they act on, are :mod:`hookline.dlq_options`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

import click
import orjson
import redis

from hookline.cli.audit import audited
from hookline.cli.dlq_options import (
    config_option,
    filter_options,
    read_filter,
    read_selection,
    session,
)
from hookline.dlq import files, ops
from hookline.dlq.format import age, describe, detail, table
from hookline.dlq.search import Cursor, Search
from hookline.dlq.store import DeadLetters
from hookline.errors import DeadLetterError, ExportFileError
from hookline.terminal import safe, safe_json, safe_json_bytes

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

#: Exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def _missing(ids: Sequence[str]) -> None:
    if ids:
        shown = ", ".join(map(safe, ids[:20])) + (
            f" and {len(ids) - 20} more" if len(ids) > 20 else ""
        )
        click.echo(f"error: no dead letter with id {shown}", err=True)


def _count_text(total: int, exact: bool) -> str:
    return f"{total}" if exact else f"up to {total}"


def _letters(n: int) -> str:
    return f"{n} dead letter" + ("" if n == 1 else "s")


class _TerminalSafe:
    """A byte stream that writes JSON Lines with DEL and C1 escaped (the same JSON)."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target

    def write(self, data: bytes) -> int:
        """Write ``data`` made terminal-safe."""
        return self._target.write(safe_json_bytes(data))


# -- commands ---------------------------------------------------------------------------


@click.group()
def dlq() -> None:
    """Inspect the dead-letter queue, replay what can now succeed, purge the rest."""


@dlq.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def stats(config_path: str | None, as_json: bool) -> None:
    """Counts by source, type and error type; oldest and newest age."""
    with session(config_path) as dead_letters:
        st = ops.stats(dead_letters)
    now = time.time()
    if as_json:
        data = {
            "total": st.total,
            "by_source": st.by_source,
            "by_type": st.by_type,
            "by_error": st.by_error,
            "oldest": st.oldest,
            "newest": st.newest,
        }
        click.echo(safe_json(orjson.dumps(data).decode()))
        return
    if not st.total:
        click.echo("the dead-letter queue is empty")
        return
    assert st.oldest is not None and st.newest is not None
    click.echo(
        f"{_letters(st.total)}; oldest died {age(now - st.oldest)} ago, "
        f"newest {age(now - st.newest)} ago"
    )
    for title, counts in (
        ("by source", st.by_source),
        ("by type", st.by_type),
        ("by error type", st.by_error),
    ):
        shown = {safe(key): value for key, value in counts.items()}
        width = max(len(k) for k in shown) if shown else 0
        click.echo(f"\n{title}")
        for key, value in shown.items():
            click.echo(f"  {key:<{width}}  {value:>8}")


@dlq.command(name="list")
@config_option
@filter_options(limit=50)
@click.option("--after", help="Continue after this cursor (printed under a full page).")
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(
    config_path: str | None,
    source: str | None,
    event_type: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    after: str | None,
    oldest_first: bool,
    as_json: bool,
) -> None:
    """List dead letters, newest first, with why they died."""
    flt = read_filter(source, event_type, error, since, until)
    try:
        cursor = Cursor.parse(after) if after else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--after") from None
    with session(config_path) as dead_letters:
        search = Search(dead_letters)
        page = search.page(flt, after=cursor, limit=limit, newest_first=not oldest_first)
        total, exact = search.count(flt)
    now = time.time()
    if as_json:
        for letter in page.items:
            click.echo(safe_json(orjson.dumps(ops.summary(letter, now)).decode()))
    elif page.items:
        click.echo(table(page.items, now))
    if page.next is not None and len(page.items) == limit:
        click.echo(
            f"{len(page.items)} shown of {_count_text(total, exact)}; next page: --after "
            f"{page.next.token()}",
            err=as_json,
        )
    elif not page.items and not as_json:
        click.echo("no dead letters match")


@dlq.command()
@config_option
@click.argument("entry", required=False)
@click.option("--event-id", help="The event's id (as the provider sent it) instead of ENTRY.")
@click.option("--source", help="The event's source (with --event-id, or ENTRY as an event id).")
@click.option("--json", "as_json", is_flag=True, help="The entry as stored (pretty JSON).")
def show(
    config_path: str | None,
    entry: str | None,
    event_id: str | None,
    source: str | None,
    as_json: bool,
) -> None:
    """Show one dead letter: envelope, headers, body, every attempt with its traceback.

    ENTRY is a dead-letter id (from `hookline dlq list`), SOURCE:EVENT_ID, or an event id.
    """
    if (entry is None) == (event_id is None):
        raise click.UsageError(
            "name one dead letter: ENTRY (an id or SOURCE:EVENT_ID) or --event-id"
        )
    with session(config_path) as dead_letters:
        try:
            letter = ops.find(
                dead_letters,
                entry if source is None else None,
                event_id=event_id if source is None else (event_id or entry),
                source=source,
            )
        except DeadLetterError as exc:
            raise click.ClickException(f"{safe(str(exc))} (see `hookline dlq list`)") from None
    if as_json:
        shown = orjson.dumps(letter.to_dict(), option=orjson.OPT_INDENT_2).decode()
        click.echo(safe_json(shown))
    else:
        click.echo(detail(letter, time.time()))


def _status(progress: ops.Progress, rate: float | None) -> str:
    """The rate so far and the time left, at the rate asked for (else the rate so far)."""
    speed = rate or progress.rate
    if speed <= 0:
        return f"{progress.rate:.1f}/s  ETA -:--:--"
    left = int(max(progress.total - progress.handled, 0) / speed)
    return f"{progress.rate:.1f}/s  ETA {left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}"


def _run(job: ops.Bulk | files.Reinject, label: str, verb: str) -> ops.Progress:
    """Run ``job`` under a progress bar; Ctrl-C and Redis failures say how far it got."""
    progress = job.progress
    promise = "" if verb == "removing" else "nothing lost or doubled; "
    bar: ProgressBar[int] = click.progressbar(
        length=max(progress.total, 1),
        label=label,
        file=sys.stderr,
        show_pos=True,
        show_eta=False,
        item_show_func=lambda _: _status(progress, job.rate),
        hidden=not sys.stderr.isatty(),  # a bar only on a terminal
    )
    try:
        with bar:
            job.run(on_step=bar.update)
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted after {verb} {progress.done + progress.enqueued}: {promise}"
            "run the same command again to continue",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    except redis.RedisError as exc:
        raise click.ClickException(
            f"Redis failed after {verb} {progress.done + progress.enqueued} "
            f"({safe(str(exc))}): {promise}run the same command again to continue"
        ) from None
    return progress


def _dry_run(dead_letters: DeadLetters, selection: ops.Selection) -> int:
    """Print what a replay of ``selection`` would move; exit status."""
    now, found, missing = time.time(), 0, []
    for ids in ops.id_batches(dead_letters, selection.frozen(now), 500):
        letters = dead_letters.get_many(ids)
        known = {letter.id for letter in letters}
        missing += [i for i in ids if i not in known] if selection.ids else []
        if letters:
            click.echo(table(letters, now))
        found += len(letters)
    click.echo(f"dry run: {_letters(found)} would be replayed ({describe(selection)})")
    _missing(missing)
    return 1 if missing else 0


def _dry_run_file(job: files.Reinject) -> int:
    """Print what re-injecting a file would do; exit status."""
    dead, fresh = 0, 0
    for letters, present in job.plan():
        click.echo(table(letters, time.time()))
        dead += sum(present)
        fresh += len(present) - sum(present)
    click.echo(
        f"dry run: {dead} would be replayed from the dead-letter queue, {fresh} enqueued "
        "afresh (no longer dead letters)"
    )
    return 0


@dlq.command()
@config_option
@click.argument("ids", nargs=-1)
@filter_options(limit=None)
@click.option("--all", "select_all", is_flag=True, help="Every dead letter (or every filtered).")
@click.option(
    "--from",
    "from_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Re-inject the entries of an export file (filters apply to them).",
)
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), help="Events per second (default: max)."
)
@click.option("--dry-run", is_flag=True, help="Print what would be replayed and how many.")
def replay(
    config_path: str | None,
    ids: tuple[str, ...],
    source: str | None,
    event_type: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    select_all: bool,
    from_file: str | None,
    rate: float | None,
    dry_run: bool,
) -> None:
    """Put dead letters back on their queues with a fresh set of attempts.

    Each event moves atomically, so an interrupted replay loses and doubles nothing;
    run it again and it continues. Events that have meanwhile succeeded are not
    handled again (the workers' done markers).
    """
    flt = read_filter(source, event_type, error, since, until)
    if from_file and (ids or select_all):
        raise click.UsageError("--from re-injects a file: no ids or --all with it")
    selection = None if from_file else read_selection(ids, flt, limit, select_all, "replay")
    with session(config_path) as dead_letters:
        if from_file:
            try:
                reinject = files.Reinject(dead_letters, from_file, flt, rate=rate, limit=limit)
            except ExportFileError as exc:
                raise click.ClickException(str(exc)) from None
            if dry_run:
                sys.exit(_dry_run_file(reinject))
            job: ops.Bulk | files.Reinject = reinject
        else:
            assert selection is not None
            if dry_run:
                sys.exit(_dry_run(dead_letters, selection))
            job = ops.Bulk(dead_letters, selection, rate=rate)
        if not job.progress.total:
            click.echo("no dead letters match: nothing to replay")
            return
        what = f"file {from_file}" if from_file else describe(selection or ops.Selection())
        with audited(
            dead_letters, "reinject" if from_file else "replay", what, lambda: job.progress
        ):
            progress = _run(job, "replaying", "replaying")
    took = f"in {progress.elapsed:.1f} s ({progress.rate:.1f}/s)"
    if from_file:
        click.echo(
            f"replayed {progress.done} from the dead-letter queue and enqueued "
            f"{progress.enqueued} afresh {took}"
        )
    else:
        gone = f"; {progress.gone} already gone" if progress.gone else ""
        click.echo(f"replayed {_letters(progress.done)} to their queues {took}{gone}")
    _missing(progress.missing)
    if progress.missing:
        sys.exit(1)


@dlq.command()
@config_option
@click.argument("ids", nargs=-1)
@filter_options(limit=None)
@click.option("--all", "select_all", is_flag=True, help="Every dead letter (or every filtered).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def purge(
    config_path: str | None,
    ids: tuple[str, ...],
    source: str | None,
    event_type: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    select_all: bool,
    yes: bool,
) -> None:
    """Remove dead letters for good (export them first if in doubt)."""
    flt = read_filter(source, event_type, error, since, until)
    selection = read_selection(ids, flt, limit, select_all, "purge")
    with session(config_path) as dead_letters:
        job = ops.Bulk(dead_letters, selection, purge=True)
        total, exact = job.progress.total, job.progress.exact
        if not total:
            click.echo("no dead letters match: nothing removed")
            return
        if not yes:
            click.confirm(
                f"Remove {_count_text(total, exact)} dead letter(s) ({describe(selection)})? "
                "This cannot be undone",
                abort=True,
            )
        with audited(dead_letters, "purge", describe(selection), lambda: job.progress):
            progress = _run(job, "purging", "removing")
    click.echo(f"removed {_letters(progress.done)}")
    _missing(progress.missing)
    if progress.missing:
        sys.exit(1)


@dlq.command()
@config_option
@click.argument("ids", nargs=-1)
@filter_options(limit=None)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to this file (appears only once complete). Default: standard output.",
)
def export(
    config_path: str | None,
    ids: tuple[str, ...],
    source: str | None,
    event_type: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    output: str | None,
) -> None:
    """Write dead letters as JSON Lines (all, or the named or filtered ones), oldest first.

    The file is complete enough to re-inject them later: `hookline dlq replay --from FILE`.
    """
    flt = read_filter(source, event_type, error, since, until)
    if ids and not flt.empty:
        raise click.UsageError("name ids, or give filters, not both")
    selection = ops.Selection(tuple(ids), flt, limit).frozen()
    counts = ops.Progress(total=0, exact=False)
    with (
        session(config_path) as dead_letters,
        audited(dead_letters, "export", describe(selection), lambda: counts),
    ):
        if output:
            with files.atomic_file(output) as out:
                written, missing = files.export(dead_letters, selection, out)
        else:
            try:
                written, missing = files.export(
                    dead_letters, selection, _TerminalSafe(sys.stdout.buffer)
                )
                sys.stdout.flush()
            except BrokenPipeError:
                # The reader went away (`| head`): stop quietly, as other Unix tools do.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(1)
        counts.done, counts.total = written, written + len(missing)
        counts.missing = missing
    click.echo(f"exported {_letters(written)}" + (f" to {output}" if output else ""), err=True)
    _missing(missing)
    if missing:
        sys.exit(1)
