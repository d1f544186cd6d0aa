"""What a ``hookline dlq`` command acts on: its shared options, the selection they make, Redis.

The commands themselves are in :mod:`hookline.cli.dlq`. Everything here turns an
operator's mistake or an unreachable Redis into a message and click's exit status.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import click
import redis

from hookline.cli import options
from hookline.config.settings import CONFIG_ENV, REDIS_URL_ENV, load_settings
from hookline.dlq import ops
from hookline.dlq.search import Filter
from hookline.dlq.store import DeadLetters
from hookline.errors import FilterError, HooklineError, RedisModeError, RedisUrlError
from hookline.redis.connection import (
    failure_reason,
    mask_url,
    refuse_cluster_node,
    sync_client,
)

F = TypeVar("F", bound=Callable[..., Any])

#: The ``--config`` option of every command: where :func:`session` finds Redis.
config_option = options.config_option(
    discover=True,
    help_text=f"Configuration file (TOML); Redis from redis.url. Default: ${CONFIG_ENV}, "
    f"else {options.DEV_CONFIG_FILE} while `hookline dev` runs here, else ${REDIS_URL_ENV}.",
)


def filter_options(limit: int | None) -> Callable[[F], F]:
    """The filter options shared by every command that selects dead letters."""

    def apply(func: F) -> F:
        options = [
            click.option("--source", help="Only this source."),
            click.option(
                "--type", "event_type", help="Only this event type (or glob: 'invoice.*')."
            ),
            click.option("--error", help="Error type or message contains this (any case)."),
            click.option("--since", help="Died at or after: 2h (ago), 2024-05-01T10:00 (UTC)."),
            click.option("--until", help="Died at or before: same forms as --since."),
            click.option(
                "--limit",
                type=click.IntRange(min=1),
                default=limit,
                show_default=limit is not None,
                help="At most this many entries.",
            ),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def read_filter(
    source: str | None,
    event_type: str | None,
    error: str | None,
    since: str | None,
    until: str | None,
) -> Filter:
    """The filter the filter options name.

    Raises:
        click.UsageError: when a time cannot be read; the message says what to type.
    """
    try:
        return ops.make_filter(
            source=source, type=event_type, error=error, since=since, until=until
        )
    except FilterError as exc:
        raise click.UsageError(str(exc)) from None


def read_selection(
    ids: Sequence[str], flt: Filter, limit: int | None, select_all: bool, verb: str
) -> ops.Selection:
    """The entries a bulk command (``verb``) acts on: named ids, a filter, or ``--all``.

    Raises:
        click.UsageError: when both ids and a filter are given, or neither nor ``--all``.
    """
    if ids and (select_all or not flt.empty):
        raise click.UsageError("name ids, or give filters or --all, not both")
    if not ids and flt.empty and not select_all:
        raise click.UsageError(
            f"nothing selected: name ids, give a filter (--source, --type, --error, "
            f"--since, --until), or --all to {verb} every dead letter"
        )
    return ops.Selection(tuple(ids), flt, limit)


def _redis_url(config_path: str | None) -> str:
    if config_path:
        try:
            url = load_settings(config_path).redis_url
        except HooklineError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        url = os.environ.get(REDIS_URL_ENV)
    if not url:
        raise click.ClickException(
            f"no Redis to read: set redis.url in the configuration (--config or "
            f"${CONFIG_ENV}) or ${REDIS_URL_ENV}, or start `hookline dev` in this directory"
        )
    return url


@contextlib.contextmanager
def session(config_path: str | None) -> Iterator[DeadLetters]:
    """The dead letters of the configured Redis; Redis failures become clear messages."""
    url = _redis_url(config_path)
    try:
        client = sync_client(url)
    except RedisUrlError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        refuse_cluster_node(client.info("cluster"), url)
        yield DeadLetters(client)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise click.ClickException(
            f"cannot reach Redis at {mask_url(url)}: {failure_reason(exc)}\n"
            f"Is it running? The address comes from redis.url in the configuration "
            f"or ${REDIS_URL_ENV}."
        ) from None
    except redis.RedisError as exc:
        reason = str(exc).replace(url, mask_url(url))
        raise click.ClickException(f"Redis answered with an error: {reason}") from None
    except RedisModeError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()
