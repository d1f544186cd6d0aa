"""Sources made ready to serve: each scheme built and its keys read once, at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hookline.config.settings import SourceSettings
from hookline.envelope import utf8_text
from hookline.errors import ConfigError
from hookline.ingest.addresses import AddressSet
from hookline.ingest.extract import Locator, locators
from hookline.ingest.schemes import Key, Scheme, get_scheme

#: Headers kept in every envelope besides the scheme's own.
BASE_HEADERS = ("content-type", "user-agent")


@dataclass(frozen=True, slots=True)
class PreparedSource:
    """A source with its scheme built and its secrets turned into keys once, at start-up."""

    settings: SourceSettings
    scheme: Scheme
    keys: tuple[Key, ...]
    id_from: tuple[Locator, ...]
    type_from: tuple[Locator, ...]
    #: Header names kept besides the scheme's prefixes (computed once).
    keep: frozenset[str] = frozenset()
    #: Header names never kept: they carry a secret itself (computed once).
    hidden: frozenset[str] = frozenset()
    #: The URL the provider posts to, for schemes that sign it (without a query string).
    public_url: str = ""
    #: The replay window: the source's ``tolerance`` if set (here or in ``[receiver]``),
    #: else the scheme's documented one, else the default.
    tolerance: float = 300.0
    #: The client addresses allowed (``allow_ips``); empty: any.
    allow: AddressSet = field(default_factory=lambda: AddressSet(()))
    #: Whether a signed body accepted before under another id is a replay (see
    #: :func:`replay_guard_default`).
    replay_guard: bool = False

    def kept_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers worth storing with the event, bytes that were not UTF-8 escaped."""
        prefixes = self.scheme.header_prefixes
        extra = self.keep
        hidden = self.hidden
        kept = {}
        for name, value in headers.items():
            low = name.lower()
            if (low in extra or low.startswith(prefixes)) and low not in hidden:
                # The usual header is ASCII: no call needed to make it valid UTF-8.
                key = low if low.isascii() else utf8_text(low)
                kept[key] = value if value.isascii() else utf8_text(value)
        return kept


def prepare_source(source: SourceSettings) -> PreparedSource:
    """Build a source's scheme and keys: its secrets' keys, then its public keys.

    Raises:
        ConfigError: naming the key, when the scheme options, a secret or a public key
            are unusable, none is given, or a scheme that signs its URL has no public_url.
    """
    try:
        scheme = get_scheme(
            source.scheme,
            header=source.signature_header,
            prefix=source.signature_prefix,
            encoding=source.signature_encoding,
            algorithm=source.signature_algorithm,
        )
    except ValueError as exc:
        raise ConfigError(f"sources.{source.name}.scheme: {exc}") from None
    keys: list[Key] = []
    for secret in source.secrets:
        try:
            keys.append(scheme.key(secret.reveal()))
        except ValueError as exc:
            raise ConfigError(f"{secret.origin}: {exc}") from None
    for text in source.public_keys:
        try:
            keys.append(scheme.public_key(text.reveal().strip()))
        except ValueError as exc:
            raise ConfigError(f"{text.origin}: {exc}") from None
    where = f"sources.{source.name}"
    if not keys:
        wanted = "public_keys" if not scheme.takes_secrets else "secrets"
        raise ConfigError(f"{where}.{wanted}: empty; the {scheme.name} scheme needs at least one")
    if scheme.signs_url and not source.public_url:
        raise ConfigError(
            f"{where}.public_url: required for scheme {scheme.name!r}: the URL given to the "
            "provider, which it signs (e.g. https://hooks.example.com/hooks/NAME)"
        )
    signature = (scheme.signature_header.lower(),) if scheme.signature_header else ()
    id_from = locators(source.id_from or scheme.default_id)
    guard = source.replay_guard
    if guard is None:
        guard = replay_guard_default(scheme, id_from) and source.dedupe_window > 0
    return PreparedSource(
        settings=source,
        scheme=scheme,
        keys=tuple(keys),
        id_from=id_from,
        type_from=locators(source.type_from or scheme.default_type),
        keep=frozenset((*BASE_HEADERS, *source.keep_headers, *signature)),
        hidden=frozenset(scheme.secret_headers),
        public_url=source.public_url.rstrip("?"),
        tolerance=_tolerance(source, scheme),
        allow=AddressSet(source.allow_ips),
        replay_guard=guard,
    )


def _tolerance(source: SourceSettings, scheme: Scheme) -> float:
    """The source's own tolerance when the file sets one, else the scheme's, else the
    default."""
    if "tolerance" in source.model_fields_set or scheme.tolerance is None:
        return source.tolerance
    return scheme.tolerance


def replay_guard_default(scheme: Scheme, id_from: tuple[Locator, ...]) -> bool:
    """Whether the replay guard is on when ``replay_guard`` is unset: where the signature
    covers the body but not every place the event id may come from (a header the scheme
    does not sign), so that a captured delivery re-sent under a new id still verifies."""
    unsigned = any(
        loc.header is not None and loc.header not in scheme.signed_headers for loc in id_from
    )
    return scheme.signs_body and unsigned
