"""The kinds of value a configuration key holds: durations, secrets, names, locators.

Plain Python, importable without pydantic: :func:`parse_duration`, :class:`Secret`, and
the functions that read each kind of value out of TOML, which
:mod:`hookline.config.schema` attaches to its types. Each raises ``ValueError`` with a
message that says what is wrong and, where it helps, what to do;
:mod:`hookline.config.messages` puts the key in front. The reader of a secret never puts
its value in a message.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Any

#: URL schemes redis-py connects with.
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")
#: What to do when a source lists no secret.
SECRETS_HINT = "list at least one secret or {env = NAME}"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_LOCATOR = re.compile(r"^(header|body):.+$")


def parse_duration(value: object) -> float:
    """Parse seconds (a number) or a string such as ``"300ms"``, ``"5m"``, ``"3d"``.

    Raises:
        ValueError: when the value is not a non-negative duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30, '5m' or '3d', got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):  # TOML has nan and inf; a nan tolerance accepts any age
            raise ValueError(f"expected a duration such as 30, '5m' or '3d', got {value!r}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as 30, '5m' or '3d', got {value!r}")


class Secret:
    """A secret string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str) -> None:
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        """The secret itself; call only where it is used for signing or verifying."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<hidden>, from {self.origin})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def str_list(value: Any) -> tuple[str, ...]:
    """A string or a list of non-empty strings, as a tuple."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def header_names(value: Any) -> tuple[str, ...]:
    """Header names (a string or a list), lower-cased."""
    return tuple(header.lower() for header in str_list(value))


def locators(value: Any) -> tuple[str, ...]:
    """``"header:<name>"`` or ``"body:<dotted.path>"`` (or a list), header names lower-cased."""
    items = str_list(value)
    for item in items:
        if not _LOCATOR.match(item):
            raise ValueError(f"expected 'header:<name>' or 'body:<json.path>', got {item!r}")
    return tuple(i.lower() if i.startswith("header:") else i for i in items)


def queue_name(value: Any) -> str:
    """A name of letters, digits, ``_``, ``-``, ``.`` (Redis keys and URLs carry it)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"expected a name of letters, digits, '_', '-', '.', got {value!r}")
    return value


def source_name(value: Any) -> str:
    """The name of a ``[sources.NAME]`` table: the same characters as a queue name."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError("a source name may hold letters, digits, '_', '-', '.'")
    return value


def redis_url(value: Any) -> str:
    """A URL redis-py connects with; never echoed, as it may carry a password."""
    if not isinstance(value, str) or not value.startswith(REDIS_URL_SCHEMES):
        raise ValueError("expected a redis://, rediss://, unix:// or redis+sentinel:// URL")
    from hookline.errors import RedisUrlError
    from hookline.redis.connection import check_url  # redis-py, only once a URL is read

    try:
        check_url(value)
    except RedisUrlError as exc:
        raise ValueError(str(exc).removeprefix("redis.url ")) from None
    return value


def secret_list(value: Any) -> list[Any] | tuple[Any, ...]:
    """The list of a source's secrets, not empty (each entry is read by :func:`source_secret`).

    The default, ``()``, passes (a source with public keys needs no secret; the schema
    checks that one of the two is there): what a file gives is a list, never a tuple.
    """
    if isinstance(value, tuple) and not value:
        return value
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of secrets, each a string or {env = NAME}")
    if not value:
        raise ValueError(f"empty; {SECRETS_HINT}")
    return value


def public_key_list(value: Any) -> list[Any] | tuple[Any, ...]:
    """The list of a source's public keys, not empty (each read like a secret)."""
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of public keys, each a string or {env = NAME}")
    if not value:
        raise ValueError("empty; list the provider's public key, or remove the key")
    return value


def public_url(value: Any) -> str:
    """The URL a provider posts to and signs: http(s), a host, no query string."""
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ValueError("expected the URL given to the provider, https://HOST/hooks/NAME")
    if "?" in value or "#" in value:
        raise ValueError("leave out the query string: the request's own is appended to it")
    if not value.split("://", 1)[1].split("/", 1)[0]:
        raise ValueError("expected the URL given to the provider, https://HOST/hooks/NAME")
    return value


def source_secret(value: Any, env: Mapping[str, str]) -> Secret:
    """One entry of ``secrets``: a string, or ``{env = NAME}`` read from ``env``.

    The origin is completed with the key (``sources.NAME.secrets[i]``) once the source's
    name is known (:meth:`SourceSettings.named`); here it holds only the variable, if any.
    """
    if isinstance(value, Secret):
        return value
    if isinstance(value, str) and value:
        return Secret(value, "")
    if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
        variable = value["env"]
        if not (found := env.get(variable)):
            raise ValueError(
                f"environment variable {variable} is not set; export {variable} or remove the entry"
            )
        return Secret(found, f" (${variable})")
    raise ValueError("expected a string or {env = NAME}")


def console_token(value: Any) -> Secret:
    """The console's token: a non-empty string (never echoed)."""
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return Secret(value, "console.token")


def networks(value: Any) -> tuple[str, ...]:
    """Addresses or CIDR ranges (a string or a list), each written as its network.

    ``10.0.0.7`` becomes ``10.0.0.7/32``; host bits set in a range (``10.0.0.7/24``) are an
    error rather than silently widened, as the intent is unclear.
    """
    items = str_list(value)
    found = []
    for item in items:
        try:
            found.append(str(ipaddress.ip_network(item.strip())))
        except ValueError as exc:
            raise ValueError(
                f"{item!r} is not an IP address or CIDR range such as 192.0.2.0/24 ({exc})"
            ) from None
    return tuple(found)
