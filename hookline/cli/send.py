"""Sign and POST a sample event as a provider would (``hookline send``)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from hookline.config.settings import Settings
from hookline.errors import ConfigError
from hookline.ingest.schemes import SigningKey
from hookline.ingest.sources import PreparedSource, prepare_source
from hookline.redis.connection import mask_url


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request ready to send: URL, headers and body."""

    url: str
    headers: dict[str, str]
    body: bytes
    event_id: str


def _set_path(target: dict[str, Any], path: tuple[str, ...], value: str, *, replace: bool) -> None:
    *parents, last = path
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ValueError(f"--data: {part!r} must be a JSON object to hold {'.'.join(path)!r}")
    if replace:
        target[last] = value
    else:
        target.setdefault(last, value)


def _signing_key(prepared: PreparedSource, private_key: str | None) -> SigningKey:
    """The private key given, else the source's first secret.

    Raises:
        ConfigError: when the source has no secret and no private key was given.
        ValueError: when the private key is not one the scheme signs with.
    """
    scheme = prepared.scheme
    if private_key is not None:
        return scheme.signing_key(private_key)
    for key in prepared.keys:
        if isinstance(key, bytes):
            return key
    raise ConfigError(
        f"source {prepared.settings.name!r} verifies with public keys only: pass --private-key "
        f"with the private key `hookline keygen {scheme.name}` printed with one of them"
    )


def _body(
    data: bytes | None, prepared: PreparedSource, event_id: str, event_type: str | None
) -> tuple[bytes, str]:
    """The body to send, with the event id and type where the source's body locators
    look for them, and the event id it carries."""
    id_at, type_at = prepared.id_from[0], prepared.type_from[0]
    body_fields = [loc for loc in (id_at, type_at) if loc.header is None]
    if data is not None and not body_fields:
        return data, event_id
    try:
        payload = orjson.loads(data) if data is not None else {"data": {"object": {}}}
    except orjson.JSONDecodeError as exc:
        raise ValueError(
            f"--data is not valid JSON ({exc}); source {prepared.settings.name!r} reads its "
            "event id or type from the body"
        ) from None
    # A locator starting with an index (body:0.sg_event_id) reads a batch: send one of one.
    batch = any(loc.path[0].isdigit() for loc in body_fields)
    if batch and isinstance(payload, list) and payload:
        payload = payload[0]
    if not isinstance(payload, dict):
        raise ValueError("--data must be a JSON object for this source")
    for locator, value, replace in (
        (id_at, event_id, False),
        (type_at, event_type or "hookline.test", event_type is not None),  # --type wins
    ):
        if locator.header is None:
            path = locator.path[1:] if batch and locator.path[0].isdigit() else locator.path
            _set_path(payload, path, value, replace=replace)
    if id_at.header is None:
        found = id_at.find([payload] if batch else payload)
        if found is not None:  # --data brought its own id
            event_id = str(found)
    return orjson.dumps([payload] if batch else payload), event_id


def build_request(
    settings: Settings,
    source_name: str,
    *,
    event_type: str | None = None,
    data: bytes | None = None,
    url: str | None = None,
    timestamp: int | None = None,
    private_key: str | None = None,
) -> SignedRequest:
    """Sign a sample (or the given) body as the source's provider would.

    It signs with ``private_key`` (for schemes keyed by public keys: the private key
    ``hookline keygen`` printed), else with the source's first secret. The event id and
    type are put where the source's locators look for them: into the JSON body for
    ``body:`` locators, into headers for ``header:`` locators. For schemes that sign the
    URL, the source's ``public_url`` is signed and the request goes to ``url``.

    Raises:
        ConfigError: for an unknown source, an unusable secret, or no key to sign with.
        ValueError: when ``data`` is not a JSON object although ids live in the body,
            ``url`` is not an http(s) URL, or the private key is not the scheme's kind.
    """
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(
            f"invalid receiver URL {mask_url(url)!r}: expected http://HOST:PORT/hooks/SOURCE"
        )
    source = settings.sources.get(source_name)
    if source is None:
        known = ", ".join(sorted(settings.sources)) or "none"
        raise ConfigError(f"unknown source {source_name!r}; configured sources: {known}")
    prepared = prepare_source(source)
    scheme = prepared.scheme
    key = _signing_key(prepared, private_key)
    event_id = f"evt_{uuid.uuid4().hex}"
    body, event_id = _body(data, prepared, event_id, event_type)
    stamp = timestamp or int(time.time())
    body = scheme.sign_body(body, key, timestamp=stamp, msg_id=event_id)
    headers: CIMultiDict[str] = CIMultiDict(
        {"Content-Type": "application/json", "User-Agent": "hookline-send"}
    )
    if body.startswith(b"webhook_id=") or not body.lstrip().startswith((b"{", b"[")):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    for locator, value in ((prepared.id_from[0], event_id), (prepared.type_from[0], event_type)):
        if locator.header is not None:
            headers[locator.header] = value or "hookline.test"
    host = settings.server.host if settings.server.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104 -- comparing, not binding
    target = url or f"http://{host}:{settings.server.port}/hooks/{source_name}"
    query = scheme.query(body)
    if query:
        target += ("&" if "?" in target else "?") + query
    signed_url = ""
    if scheme.signs_url:
        _, mark, sent_query = target.partition("?")
        signed_url = prepared.public_url + mark + sent_query
    headers.update(scheme.sign(body, key, timestamp=stamp, msg_id=event_id, url=signed_url))
    return SignedRequest(target, dict(headers.items()), body, event_id)


async def post(request: SignedRequest, time_limit: float = 10.0) -> tuple[int, bytes]:
    """POST the signed request and return the status and body of the answer."""
    client_timeout = aiohttp.ClientTimeout(total=time_limit)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.post(request.url, data=request.body, headers=request.headers) as response,
    ):
        return response.status, await response.read()
