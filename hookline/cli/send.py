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
from hookline.ingest.app import prepare_source
from hookline.ingest.extract import Locator


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A request ready to send: URL, headers and body."""

    url: str
    headers: dict[str, str]
    body: bytes
    event_id: str


def _set_path(target: dict[str, Any], locator: Locator, value: str, *, replace: bool) -> None:
    *parents, last = locator.path
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ValueError(f"--data: {part!r} must be a JSON object to hold {locator.text!r}")
    if replace:
        target[last] = value
    else:
        target.setdefault(last, value)


def build_request(
    settings: Settings,
    source_name: str,
    *,
    event_type: str | None = None,
    data: bytes | None = None,
    url: str | None = None,
    timestamp: int | None = None,
) -> SignedRequest:
    """Sign a sample (or the given) body with the source's scheme and first secret.

    The event id and type are put where the source's locators look for them: into
    the JSON body for ``body:`` locators, into headers for ``header:`` locators.

    Raises:
        ConfigError: for an unknown source or unusable secret.
        ValueError: when ``data`` is not a JSON object although ids live in the body, or
            ``url`` is not an http(s) URL.
    """
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"invalid receiver URL {url!r}: expected http://HOST:PORT/hooks/SOURCE")
    source = settings.sources.get(source_name)
    if source is None:
        known = ", ".join(sorted(settings.sources)) or "none"
        raise ConfigError(f"unknown source {source_name!r}; configured sources: {known}")
    prepared = prepare_source(source)
    event_id = f"evt_{uuid.uuid4().hex}"
    explicit_type = event_type is not None
    event_type = event_type or "hookline.test"
    headers: CIMultiDict[str] = CIMultiDict(
        {"Content-Type": "application/json", "User-Agent": "hookline-send"}
    )
    id_at, type_at = prepared.id_from[0], prepared.type_from[0]
    body_fields = [loc for loc in (id_at, type_at) if loc.header is None]
    if data is None or body_fields:
        try:
            payload = orjson.loads(data) if data is not None else {"data": {"object": {}}}
        except orjson.JSONDecodeError as exc:
            raise ValueError(
                f"--data is not valid JSON ({exc}); source {source_name!r} reads its event "
                "id or type from the body"
            ) from None
        if not isinstance(payload, dict):
            raise ValueError("--data must be a JSON object for this source")
        for locator, value, replace in (
            (id_at, event_id, False),
            (type_at, event_type, explicit_type),  # --type wins over --data
        ):
            if locator.header is None:
                _set_path(payload, locator, value, replace=replace)
        found = id_at.find(payload) if id_at.header is None else None
        if found is not None:  # --data brought its own id
            event_id = str(found)
        body = orjson.dumps(payload)
    else:
        body = data
    for locator, value in ((id_at, event_id), (type_at, event_type)):
        if locator.header is not None:
            headers[locator.header] = value
    headers.update(
        prepared.scheme.sign(
            body, prepared.keys[0], timestamp=timestamp or int(time.time()), msg_id=event_id
        )
    )
    headers_out = dict(headers.items())
    host = settings.server.host if settings.server.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104 -- comparing, not binding
    return SignedRequest(
        url or f"http://{host}:{settings.server.port}/hooks/{source_name}",
        headers_out,
        body,
        event_id,
    )


async def post(request: SignedRequest, time_limit: float = 10.0) -> tuple[int, bytes]:
    """POST the signed request and return the status and body of the answer."""
    client_timeout = aiohttp.ClientTimeout(total=time_limit)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.post(request.url, data=request.body, headers=request.headers) as response,
    ):
        return response.status, await response.read()
