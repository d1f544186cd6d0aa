"""``hookline check``: find what would stop hookline or lose events, before it runs.

Four passes, each reporting every problem it finds rather than the first: the
configuration (with each source whose environment secrets are missing named as such),
each source's scheme and keys, each handler module (imported as a worker would, from the
current directory), and the Redis server (reachable, and configured so that an
acknowledged event is neither evicted nor lost on restart).
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import redis

from hookline.config.settings import (
    CONFIG_ENV,
    REDIS_URL_ENV,
    Settings,
    load_settings,
    parse_settings,
)
from hookline.errors import ConfigError, HooklineError, RedisModeError, RedisUrlError
from hookline.ingest.sources import prepare_source
from hookline.redis.connection import (
    MASK,
    failure_reason,
    mask_url,
    refuse_cluster_node,
    sync_client,
)
from hookline.terminal import safe

Level = Literal["error", "warning", "info", "ok"]

#: Stands in for a missing environment secret so the rest of the file can be validated;
#: a source holding one is reported and never built.
_PLACEHOLDER = "hookline-check-placeholder"


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of a check: ``error`` stops hookline, ``warning`` risks losing events."""

    level: Level
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


def has_errors(findings: Iterable[Finding]) -> bool:
    """Whether any finding is an error (``hookline check`` then exits non-zero)."""
    return any(f.level == "error" for f in findings)


def render(findings: Iterable[Finding]) -> str:
    """One ``level: message`` line per finding, then a count of errors and warnings."""
    items = list(findings)
    errors = sum(f.level == "error" for f in items)
    warnings = sum(f.level == "warning" for f in items)
    summary = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    # A message may quote what Redis said (its version, an error): shown escaped.
    return "\n".join([*(safe(str(f)) for f in items), summary])


def run_checks(config_path: str | None, env: Mapping[str, str]) -> list[Finding]:
    """Check the configuration named by ``config_path`` (or ``$HOOKLINE_CONFIG``), then
    its sources and its Redis server.

    Args:
        config_path: the configuration file; ``None`` to use ``env[HOOKLINE_CONFIG]``.
        env: the environment secrets and overrides are read from.
    """
    settings, findings, skipped = _check_config(config_path, env)
    if settings is None:
        findings.append(
            Finding("info", "sources, handlers and Redis not checked: fix the configuration")
        )
        return findings
    findings += check_sources(settings, skipped=skipped)
    findings += check_handlers(settings, skipped=skipped)
    findings += check_redis(settings.redis_url)
    return findings


def check_config(
    config_path: str | None, env: Mapping[str, str]
) -> tuple[Settings | None, list[Finding]]:
    """Validate the configuration, one finding per problem.

    A source whose ``{ env = NAME }`` secrets are unset is reported as
    ``secrets missing for source NAME`` and left out of the returned settings, so that
    the other sources and Redis can still be checked.

    Returns:
        the settings (``None`` when other problems prevent building them) and the findings.
    """
    settings, findings, _ = _check_config(config_path, env)
    return settings, findings


def _check_config(
    config_path: str | None, env: Mapping[str, str]
) -> tuple[Settings | None, list[Finding], list[str]]:
    """:func:`check_config`, and the sources left out for missing secrets."""
    try:
        settings = load_settings(config_path, env)
    except ConfigError as exc:
        chosen = config_path or env.get(CONFIG_ENV)
        if not chosen:
            return None, [Finding("error", str(exc))], []
        try:
            data = tomllib.loads(Path(chosen).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None, [Finding("error", str(exc))], []  # load_settings already said why
        return _check_parsed(data, env, Path(chosen))
    return settings, [_config_ok(settings)], []


def _check_parsed(
    data: Mapping[str, Any], env: Mapping[str, str], path: Path
) -> tuple[Settings | None, list[Finding], list[str]]:
    missing = _missing_env_secrets(data, env)
    findings = [
        Finding(
            "error",
            f"secrets missing for source {name}: {', '.join(names)} "
            f"{'is' if len(names) == 1 else 'are'} not set; export "
            f"{'it' if len(names) == 1 else 'them'} or remove the entry from "
            f"sources.{name}.secrets",
        )
        for name, names in missing.items()
    ]
    filled = {**env, **{n: _PLACEHOLDER for names in missing.values() for n in names}}
    try:
        settings = parse_settings(data, filled, path)
    except ConfigError as exc:
        # The message is a heading line then one indented line per problem.
        heading, *problems = str(exc).splitlines()
        errors = [Finding("error", f"{path}: {p.strip()}") for p in problems or [heading]]
        return None, errors + findings, list(missing)
    complete = {name: src for name, src in settings.sources.items() if name not in missing}
    return settings.model_copy(update={"sources": complete}), findings, list(missing)


def _missing_env_secrets(data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, list[str]]:
    """For each source, the ``{ env = NAME }`` secrets whose variable is unset or empty."""
    sources = data.get("sources")
    missing: dict[str, list[str]] = {}
    if not isinstance(sources, dict):
        return missing
    for name, table in sources.items():
        secrets = table.get("secrets") if isinstance(table, dict) else None
        for item in secrets if isinstance(secrets, list) else []:
            # The shape settings._secrets reads as an environment secret.
            is_env = (
                isinstance(item, dict) and set(item) == {"env"} and isinstance(item["env"], str)
            )
            if is_env and not env.get(item["env"]):
                missing.setdefault(name, []).append(item["env"])
    return missing


def _config_ok(settings: Settings) -> Finding:
    names = ", ".join(sorted(settings.sources)) or "none"
    return Finding("ok", f"configuration {settings.path}: valid; sources: {names}")


def check_sources(settings: Settings, *, skipped: Sequence[str] = ()) -> list[Finding]:
    """Build each source's scheme and keys as the receiver does at start-up.

    Args:
        skipped: sources left out of ``settings`` because their secrets are missing
            (reported already): with them, no source is not "no sources configured".
    """
    if not settings.sources and not skipped:
        return [Finding("warning", "no sources configured: every webhook would get a 404")]
    findings = []
    for name, source in sorted(settings.sources.items()):
        try:
            prepare_source(source)
        except ConfigError as exc:
            findings.append(Finding("error", f"source {name}: {exc}"))
            continue
        count = len(source.secrets)
        findings.append(
            Finding(
                "ok",
                f"source {name}: scheme {source.scheme}, {count} secret{'s' * (count != 1)}, "
                f"queue {source.queue}",
            )
        )
    return findings


def check_handlers(settings: Settings, *, skipped: Sequence[str] = ()) -> list[Finding]:
    """Import each handler module as a worker would and count what it registers.

    A module that cannot be imported, or has no ``@on(...)`` function, is an error naming
    it (a worker would refuse to start); a route for a source that is not configured is a
    warning (a typo: its events never come). ``skipped`` sources count as configured.
    """
    from hookline.workers.handlers import ANY, Router, load_router

    modules = settings.workers.handlers
    if not modules:
        return [Finding("info", "workers.handlers is empty: a worker would handle no event")]
    configured = {*settings.sources, *skipped}
    findings = []
    for name in modules:
        router = Router()
        try:
            added = router.include(importlib.import_module(name))
        except Exception as exc:  # whatever the module raises at import is the finding
            reason = (str(exc).strip().splitlines() or [""])[0]
            findings.append(
                Finding(
                    "error",
                    f"workers.handlers: cannot import {name!r}: {type(exc).__name__}"
                    + (f": {reason}" if reason else ""),
                )
            )
            continue
        if added == 0:
            findings.append(
                Finding(
                    "error",
                    f"workers.handlers: module {name!r} has no function decorated with @on(...)",
                )
            )
            continue
        routes = router.routes()
        shown = ", ".join(f"{source}/{event_type}" for source, event_type, _ in routes[:8])
        more = f" and {len(routes) - 8} more" if len(routes) > 8 else ""
        count = f"{len(routes)} route{'s' * (len(routes) != 1)}"
        findings.append(Finding("ok", f"handlers {name}: {count}: {shown}{more}"))
        findings += [
            Finding(
                "warning",
                f"handler {handler} is for source {source!r}, which is not configured: "
                "its events never arrive",
            )
            for source, _, handler in routes
            if source != ANY and source not in configured
        ]
    if not has_errors(findings):
        try:
            load_router(modules)  # two modules routing the same events
        except HooklineError as exc:
            findings.append(Finding("error", str(exc)))
    return findings


def check_redis(url: str | None) -> list[Finding]:
    """Connect to Redis and check the settings that decide whether events survive.

    Every message shows the URL with its password masked.
    """
    if not url:
        return [
            Finding(
                "error",
                f"redis.url is not set: set it in the configuration or {REDIS_URL_ENV} "
                "(only `hookline dev` embeds a Redis)",
            )
        ]
    shown = mask_url(url)
    try:
        client = sync_client(url)
    except RedisUrlError as exc:  # says what is wrong without the URL's secrets
        return [Finding("error", str(exc))]
    with client:
        try:
            server = client.info("server")
            memory = client.info("memory")
            persistence = client.info("persistence")
            refuse_cluster_node(client.info("cluster"), url)
        except redis.AuthenticationError as exc:
            reason = _scrub(str(exc), url)
            return [Finding("error", f"Redis at {shown} refused the credentials: {reason}")]
        except redis.RedisError as exc:
            reason = _scrub(failure_reason(exc), url)
            return [Finding("error", f"Redis at {shown} is unreachable: {reason}")]
        except RedisModeError as exc:
            return [Finding("error", str(exc))]
        save = _config_get(client, "save")
        appendfsync = _config_get(client, "appendfsync")
    findings = [Finding("ok", f"Redis at {shown} answers (Redis {server.get('redis_version')})")]
    findings.append(_eviction(str(memory.get("maxmemory_policy"))))
    findings += _persistence(bool(persistence.get("aof_enabled")), save, appendfsync)
    return findings


def _config_get(client: redis.Redis, name: str) -> str | None:
    """A server setting, or ``None`` where CONFIG is disabled (as on many managed services)."""
    try:
        value = client.config_get(name).get(name)
    except redis.ResponseError:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)


def _eviction(policy: str) -> Finding:
    if policy == "noeviction":
        return Finding("ok", "Redis maxmemory-policy noeviction")
    return Finding(
        "warning",
        f"Redis maxmemory-policy is {policy}: when memory runs out Redis deletes keys, "
        "queued events and dedupe markers among them; set maxmemory-policy noeviction",
    )


def _persistence(aof: bool, save: str | None, appendfsync: str | None) -> list[Finding]:
    if not aof:
        if save == "":
            text = (
                "Redis persistence is off (appendonly no, no save points): a restart loses "
                "every queued event; set appendonly yes"
            )
        elif save is None:
            text = (
                "Redis appendonly is off and its save points cannot be read (CONFIG refused): "
                "a restart may lose queued events; set appendonly yes"
            )
        else:
            text = (
                f"Redis persists only by RDB snapshots (save {save}): a crash loses the events "
                "acknowledged since the last snapshot; set appendonly yes"
            )
        return [Finding("warning", text)]
    findings = [Finding("ok", "Redis appendonly yes")]
    if appendfsync == "always":
        findings.append(
            Finding("info", "Redis appendfsync always: every event is on disk before the 202")
        )
    elif appendfsync == "everysec":
        findings.append(
            Finding(
                "info",
                "Redis appendfsync everysec: a power loss or OS crash can lose about the last "
                "second of acknowledged events; appendfsync always closes that gap, at a "
                "throughput cost",
            )
        )
    elif appendfsync == "no":
        findings.append(
            Finding(
                "warning",
                "Redis appendfsync no: the OS writes the append-only file when it chooses "
                "(often every 30 s), so a power loss or OS crash loses that much; "
                "set appendfsync everysec",
            )
        )
    else:
        findings.append(Finding("info", "Redis appendfsync cannot be read (CONFIG refused)"))
    return findings


def _passwords(url: str) -> list[str]:
    """The password in ``url``'s user part or ``password`` query parameter, raw and decoded."""
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    return [p for raw in found for p in {raw, unquote(raw)}]


def _scrub(text: str, url: str) -> str:
    """``text`` with every occurrence of ``url``'s password masked."""
    for password in sorted(_passwords(url), key=len, reverse=True):
        text = text.replace(password, MASK)
    return text
