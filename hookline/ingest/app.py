"""The HTTP receiver: authenticate, commit to Redis, then acknowledge.

``create_app(settings)`` builds the aiohttp application; its state lives under
``web.AppKey``s and its Redis pool and group committer in a cleanup context.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Mapping

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from hookline.config.settings import Settings
from hookline.envelope import Envelope
from hookline.errors import (
    BodyBudgetError,
    BodyTooLargeError,
    ConfigError,
    ExtractionError,
    TimestampError,
    VerificationError,
)
from hookline.ingest.addresses import client_address
from hookline.ingest.budget import BodyBudget, read_body
from hookline.ingest.commit import GroupCommitter
from hookline.ingest.extract import RequestFields
from hookline.ingest.metrics import UNKNOWN_SOURCE, ReceiverMetrics
from hookline.ingest.readiness import RedisProbe
from hookline.ingest.schemes import Answer
from hookline.ingest.sources import PreparedSource, prepare_source
from hookline.ingest.tokens import TokenLedger
from hookline.logs import LogLine, RateLimited, structlog_lines
from hookline.redis.commit import Outcome, Pending
from hookline.redis.connection import async_client


def _json(status: int, payload: object, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _json(status, {"error": error, "detail": detail}, headers)


class Receiver:
    """The webhook endpoint, with everything a request needs at hand (one ``AppKey``).

    ``committer``, ``probe`` and ``tokens`` exist while the application's Redis context is up,
    which is before the first request is served.
    """

    committer: GroupCommitter
    probe: RedisProbe
    tokens: TokenLedger

    def __init__(self, settings: Settings, metrics: ReceiverMetrics, access_log: LogLine) -> None:
        self.sources = {name: prepare_source(src) for name, src in settings.sources.items()}
        self.metrics = metrics
        server = settings.server
        self.budget = BodyBudget(server.max_buffered, server.max_buffered_per_client)
        self.address = client_address(server.trusted_proxies)
        self.log = access_log
        #: Refused requests are logged at warning, with the client address, a few a second.
        self.log_refused = RateLimited(access_log)
        self.body_timeout = server.body_timeout
        self.min_body_rate = server.min_body_rate
        self.retry_after = {"Retry-After": str(settings.server.retry_after)}

    async def receive(self, request: web.Request) -> web.Response:
        """``POST /hooks/{source}``: verify, extract, commit, acknowledge."""
        started = time.perf_counter()
        name = request.match_info["source"]
        source = self.sources.get(name)
        fields: dict[str, object] = {"source": name}
        metrics = self.metrics
        metrics.in_flight += 1
        try:
            if source is None:
                fields["outcome"] = "unknown-source"
                response = _error(404, "unknown-source", "no source of that name is configured")
            else:
                response = await self._receive(request, source, fields)
        finally:
            metrics.in_flight -= 1
        status = response.status
        metrics.answered(
            name if source is not None else UNKNOWN_SOURCE, status, fields.get("outcome")
        )
        fields["status"] = status
        fields["latency_ms"] = int((time.perf_counter() - started) * 1e6) / 1000
        fields["event"] = "webhook"
        if status < 400:
            self.log("info", fields)
        else:
            if "client" not in fields:
                fields["client"] = self.address(request)
            self.log_refused("warning", fields)
        return response

    async def _receive(
        self, request: web.Request, source: PreparedSource, fields: dict[str, object]
    ) -> web.Response:
        client = self.address(request)
        if source.allow and client not in source.allow:
            fields["outcome"] = "address-refused"
            fields["client"] = client
            return _error(403, "forbidden", "requests from this address are not accepted")
        # The body counts against the budget until the request is answered.
        with self.budget.hold(client) as held:
            try:
                content, length = request.content, request.content_length
                limit = source.settings.max_body
                if length is not None and length <= limit and content.is_eof():
                    # The usual webhook: the whole body came with the headers (read_body's
                    # first case, without the call).
                    body = content.read_nowait()
                    if refused := held.take(len(body)):
                        raise BodyBudgetError(refused)
                else:
                    body = await read_body(
                        request,
                        source.settings.max_body,
                        held,
                        self.body_timeout,
                        self.min_body_rate,
                    )
            except TimeoutError:  # a client trickling its body must not hold the request
                fields["outcome"] = "body-timeout"
                fields["client"] = client
                return _error(
                    408,
                    "body-timeout",
                    f"the request body did not arrive in time (within {self.body_timeout:g} s, "
                    f"at {self.min_body_rate} bytes/s or faster)",
                )
            except BodyTooLargeError:
                fields["outcome"] = "too-large"
                return _error(413, "too-large", f"body over {source.settings.max_body} bytes")
            except BodyBudgetError as exc:
                fields["outcome"] = str(exc)
                fields["client"] = client
                return _error(
                    503,
                    "busy",
                    "too many request bodies in progress; retry later",
                    self.retry_after,
                )
            except web.RequestPayloadError:  # e.g. a body not valid for its Content-Encoding
                fields["outcome"] = "unreadable-body"
                return _error(400, "unreadable-body", "the request body could not be decoded")
            url = ""
            if source.scheme.signs_url:  # the URL as the provider signed it, query and all
                _, mark, query = request.raw_path.partition("?")
                url = source.public_url + mark + query
            pending = _event(request.headers, source, body, fields, url)
            if isinstance(pending, web.Response):
                return pending
            token = None
            if source.scheme.single_use_tokens:
                claimed = await self._claim_token(source, body, request.headers, fields)
                if isinstance(claimed, web.Response):
                    return claimed
                token = claimed
            try:
                outcome = await self.committer.submit(pending)
            except Exception as exc:  # Redis down, timed out, or shutting down: provider retries
                self.probe.failed(exc)
                fields["outcome"] = "redis-unavailable"
                fields["error"] = type(exc).__name__
                if token is not None:
                    await self.tokens.release(source.settings.name, token)
                return _error(
                    503, "unavailable", "event store unavailable; retry later", self.retry_after
                )
        self.probe.answered()
        fields["outcome"] = _OUTCOME_NAMES[outcome]
        if outcome is Outcome.ENQUEUED:
            return _json(202, {"id": pending.envelope.id})
        if outcome is Outcome.DUPLICATE:
            return _json(200, {"id": pending.envelope.id, "duplicate": True})
        if outcome is Outcome.REPLAY:
            return _json(200, {"id": pending.envelope.id, "duplicate": True, "replay": True})
        if token is not None:  # not committed: the provider's retry must not be a replay
            await self.tokens.release(source.settings.name, token)
        if outcome is Outcome.QUEUE_FULL:
            return _error(503, "backpressure", "queue is full; retry later", self.retry_after)
        return _error(503, "unavailable", "queue key is not a list; see logs", self.retry_after)

    async def _claim_token(
        self,
        source: PreparedSource,
        body: bytes,
        headers: Mapping[str, str],
        fields: dict[str, object],
    ) -> str | web.Response:
        """Claim a verified request's single-use token, or the answer refusing it."""
        try:
            token = source.scheme.token(body, headers)
        except VerificationError as exc:
            fields["outcome"] = "bad-signature"
            return _error(401, "signature", str(exc))
        try:
            fresh = await self.tokens.claim(source.settings.name, token, source.tolerance)
        except Exception as exc:  # Redis down: nothing was committed, the provider retries
            self.probe.forget()
            fields["outcome"] = "redis-unavailable"
            fields["error"] = type(exc).__name__
            return _error(
                503, "unavailable", "event store unavailable; retry later", self.retry_after
            )
        if not fresh:
            fields["outcome"] = "replayed"
            return _error(401, "replay", "this request's token was already used")
        return token


#: How each commit outcome is logged.
_OUTCOME_NAMES = {outcome: outcome.name.lower() for outcome in Outcome}


def _answer(answer: Answer) -> web.Response:
    return web.Response(body=answer.body, status=answer.status, content_type=answer.content_type)


def _event(
    headers: Mapping[str, str],
    source: PreparedSource,
    body: bytes,
    fields: dict[str, object],
    url: str = "",
) -> Pending | web.Response:
    """Verify a request read whole and make its event ready to commit, or the answer
    that refuses it (or a handshake's, which is answered only once it verified)."""
    now = time.time()
    scheme = source.scheme
    try:
        key = scheme.verify(
            body, headers, source.keys, tolerance=source.tolerance, now=now, url=url
        )
    except TimestampError as exc:
        fields["outcome"] = "stale"
        return _error(401, "timestamp", str(exc))
    except VerificationError as exc:
        fields["outcome"] = "bad-signature"
        return _error(401, "signature", str(exc))
    if scheme.answers_handshakes and (answer := scheme.handshake(body, headers, key)) is not None:
        fields["outcome"] = "handshake"
        return _answer(answer)

    parsed = RequestFields(headers, body)
    try:
        event_id = parsed.first(source.id_from, "id")
        event_type = parsed.first(source.type_from, "type")
    except ExtractionError as exc:
        fields["outcome"] = "no-id-or-type"
        return _error(400, "unreadable-event", str(exc))
    fields["event_id"] = event_id
    fields["event_type"] = event_type
    envelope = Envelope(
        source=source.settings.name,
        id=event_id,
        type=event_type,
        received_at=now,
        headers=source.kept_headers(headers),
        body=body,
        queue=source.settings.queue,
    )
    replay = b""
    if source.replay_guard:
        # What the signature covers: the body, and the URL for schemes that sign it (a
        # digest of it, not the signature itself: an ECDSA signature has a second valid
        # form, and a hex or base64 one is written in several ways).
        signed = hashlib.sha256(body)
        if url:
            signed.update(b"\x00" + url.encode("utf-8", "surrogateescape"))
        replay = signed.digest()
    try:
        # Serialised here, so that an envelope that cannot be stored fails this request
        # alone, not every event committed in the same batch.
        settings = source.settings
        return Pending(envelope, settings.dedupe_window, settings.max_queue_depth, replay)
    except TypeError as exc:  # orjson.JSONEncodeError
        fields["outcome"] = "unstorable"
        fields["error"] = type(exc).__name__
        return _error(400, "unreadable-event", "the event cannot be stored as JSON")


SETTINGS = web.AppKey("settings", Settings)
RECEIVER = web.AppKey("receiver", Receiver)
METRICS = web.AppKey("metrics", ReceiverMetrics)
READY = web.AppKey("ready", list[bool])


def _not_allowed(allowed: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        detail = f"{request.method} is not allowed here; use {allowed}"
        return _error(405, "method-not-allowed", detail, {"Allow": allowed})

    return handler


async def not_found(request: web.Request) -> web.Response:
    """Any path the receiver does not serve: a JSON 404."""
    return _error(404, "not-found", "no such path; webhooks go to POST /hooks/SOURCE")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return _json(200, {"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: Redis answers and the receiver is not shutting down."""
    if not request.app[READY][0]:
        return _json(503, {"status": "stopping"})
    if not await request.app[RECEIVER].probe.check():
        return _json(503, {"status": "redis-unreachable"})
    return _json(200, {"status": "ready"})


def create_app(
    settings: Settings, redis_url: str | None = None, *, access_log: LogLine | None = None
) -> web.Application:
    """Build the receiver application for ``settings``.

    Args:
        settings: the validated configuration.
        redis_url: overrides ``settings.redis_url`` (for the embedded server).
        access_log: writes the line logged for every request (default: through structlog).

    Raises:
        ConfigError: when no Redis URL is known, or a source is unusable.
    """
    url = redis_url or settings.redis_url
    if not url:
        raise ConfigError("redis.url: not set; set it in the file or HOOKLINE_REDIS_URL")
    largest = max((s.max_body for s in settings.sources.values()), default=1024**2)
    # Bodies are verified and stored as the bytes on the wire: no transparent decompression.
    app = web.Application(client_max_size=largest, handler_args={"auto_decompress": False})
    metrics = app[METRICS] = ReceiverMetrics(CollectorRegistry())
    receiver = app[RECEIVER] = Receiver(
        settings, metrics, access_log or structlog_lines("hookline.ingest")
    )
    app[SETTINGS] = settings
    app[READY] = [False]
    budget = receiver.budget
    metrics.buffered_bytes.set_function(lambda: budget.used)

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        client = async_client(url)
        server = settings.server
        committer = GroupCommitter(
            client,
            max_batch=server.commit_batch,
            delay=server.commit_delay,
            wait_replicas=server.wait_replicas,
            wait_timeout=server.wait_timeout,
            observe=metrics.enqueue_seconds.observe,
        )
        committer.start()
        receiver.committer = committer
        receiver.probe = RedisProbe(client)
        receiver.tokens = TokenLedger(client)
        app[READY][0] = True
        yield
        app[READY][0] = False
        await committer.close()
        await client.aclose()

    async def not_ready(app: web.Application) -> None:
        app[READY][0] = False

    app.cleanup_ctx.append(redis_ctx)
    app.on_shutdown.append(not_ready)
    router = app.router
    router.add_post("/hooks/{source}", receiver.receive)
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    # aiohttp's own 404 and 405 are text/plain: every answer here is JSON. These routes
    # come last, so they cost nothing to the requests matched above.
    for path, allowed in (("/hooks/{source}", "POST"), ("/healthz", "GET"), ("/readyz", "GET")):
        router.add_route("*", path, _not_allowed(allowed))
    router.add_route("*", "/{path:.*}", not_found)
    return app
