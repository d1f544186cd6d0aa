"""Every configuration key, declared once: its type, default, bounds and meaning.

The tables are pydantic models: each field is a key of the TOML file, validated by its
type (see :mod:`hookline.config.values`), and unknown keys are errors. Checks between
keys are field validators that run even when other keys of the table are wrong, so that
every problem is reported at once. :mod:`hookline.config.settings` loads a file into
:class:`Settings`; the rest of hookline reads its attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from hookline.config import values
from hookline.config.defaults import (
    DEFAULT_DEDUPE_WINDOW,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_BUFFERED,
    DEFAULT_MAX_QUEUE_DEPTH,
    DEFAULT_MIN_BODY_RATE,
    DEFAULT_QUEUE,
    DEFAULT_TOLERANCE,
)
from hookline.config.values import SECRETS_HINT, Secret


def _not_a_key(value: object) -> NoReturn:
    # The attribute is filled in by the loader (a source's name is its table's key, the
    # file's path where it was read), so the file may not set it.
    raise PydanticCustomError("extra_forbidden", "unknown key")


def _source_secret(value: Any, info: ValidationInfo) -> Secret:
    env = info.context.get("env", {}) if isinstance(info.context, dict) else {}
    return values.source_secret(value, env)


def problem_at(key: str, message: str) -> PydanticCustomError:
    """An error that a check of a whole table raises about one of its keys, ``key``."""
    return PydanticCustomError("hookline", "{message}", {"message": message, "key": key})


#: Marks an attribute that is not a key of the file (see :func:`_not_a_key`).
NOT_A_KEY = BeforeValidator(_not_a_key)
#: A whole number (not a bool, a float or a numeric string); bounds go on the field.
Whole = Annotated[int, Strict()]
#: A TCP port; 0 where the key says what it means (not served, or any free port).
Port = Annotated[int, Strict(), Field(ge=0, le=65535)]
#: A non-empty string.
Text = Annotated[str, Strict(), Field(min_length=1)]
#: Seconds, given as a number or a string such as ``"300ms"``, ``"5m"`` or ``"3d"``.
Duration = Annotated[float, BeforeValidator(values.parse_duration)]
#: A queue name: letters, digits, ``_``, ``-``, ``.``.
Name = Annotated[str, BeforeValidator(values.queue_name)]
#: A source name (the key of its ``[sources.NAME]`` table).
SourceName = Annotated[str, BeforeValidator(values.source_name)]
#: A string or a list of strings.
StrList = Annotated[tuple[str, ...], BeforeValidator(values.str_list)]
#: Header names, lower-cased.
HeaderNames = Annotated[tuple[str, ...], BeforeValidator(values.header_names)]
#: Where a value comes from: ``"header:<name>"`` or ``"body:<dotted.path>"``, or a list.
Locators = Annotated[tuple[str, ...], BeforeValidator(values.locators)]
#: IP addresses or CIDR ranges, each normalised to its network (``10.0.0.7/32``).
Networks = Annotated[tuple[str, ...], BeforeValidator(values.networks)]
#: A Redis URL (never echoed in a message).
RedisUrl = Annotated[str, BeforeValidator(values.redis_url)]
#: A source's secrets: each a string or ``{env = NAME}``, read from the ``env`` of the
#: validation's context; at least one.
Secrets = Annotated[
    tuple[Annotated[Secret, PlainValidator(_source_secret)], ...],
    BeforeValidator(values.secret_list),
]
#: A source's public keys (schemes whose provider signs with a private key): like secrets,
#: each a string or ``{env = NAME}``.
PublicKeys = Annotated[
    tuple[Annotated[Secret, PlainValidator(_source_secret)], ...],
    BeforeValidator(values.public_key_list),
]
#: The URL given to a provider that signs it, without a query string.
PublicUrl = Annotated[str, BeforeValidator(values.public_url)]
#: The console's login token.
ConsoleToken = Annotated[Secret, PlainValidator(values.console_token)]

#: The signature schemes a source may use (each built by hookline.ingest.schemes).
#: The names of hookline.ingest.schemes' registry (a test keeps the two the same).
Scheme = Literal[
    "standard-webhooks", "svix", "stripe", "github", "shopify", "slack", "sendgrid",
    "discord", "twilio", "mailgun", "paddle", "zoom", "square", "intercom", "linear",
    "twitch", "gitlab", "bitbucket", "hubspot", "typeform", "woocommerce", "calendly", "mux",
    "basic-auth", "hmac", "token",
]  # fmt: skip
HmacEncoding = Literal["hex", "base64"]
HmacAlgorithm = Literal["sha1", "sha256", "sha512"]
SCHEMES: tuple[str, ...] = get_args(Scheme)
#: Signature encodings and hash algorithms the ``hmac`` scheme accepts.
HMAC_ENCODINGS: tuple[str, ...] = get_args(HmacEncoding)
HMAC_ALGORITHMS: tuple[str, ...] = get_args(HmacAlgorithm)


class Table(BaseModel):
    """A table of the file: unknown keys are errors; the values never change once read."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        # Should a ValidationError escape unformatted, it must not print the input.
        hide_input_in_errors=True,
    )


class RetryPolicy(Table):
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base*2**n))."""

    max_attempts: Whole = Field(20, ge=1, le=1000, description="attempts before dead-lettering")
    base_delay: Duration = Field(1.0, description="the first retry's longest wait")
    max_delay: Duration = Field(3600.0, validate_default=True, description="the longest wait")

    @field_validator("max_delay")
    @classmethod
    def _not_below_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("base_delay")  # absent when base_delay is itself wrong
        if base is not None and value < base:
            raise ValueError(f"must be at least base_delay ({base:g} s), got {value:g} s")
        return value


class SourceDefaults(Table):
    """The ``[receiver]`` table: defaults for the keys every source may set for itself."""

    tolerance: Duration = Field(
        DEFAULT_TOLERANCE, description="replay window for timestamped schemes"
    )
    queue: Name = Field(DEFAULT_QUEUE, description="the queue the source's events go to")
    max_body: Whole = Field(DEFAULT_MAX_BODY, ge=1, description="body size limit, in bytes")
    max_queue_depth: Whole = Field(
        DEFAULT_MAX_QUEUE_DEPTH, ge=1, description="jobs waiting in the queue before 503"
    )
    dedupe_window: Duration = Field(
        DEFAULT_DEDUPE_WINDOW, description="how long a delivered event id is remembered"
    )


class SourceSettings(SourceDefaults):
    """One webhook source: a URL path segment, a signature scheme and where events go."""

    name: Annotated[str, NOT_A_KEY] = Field("", description="the key of its [sources.NAME] table")
    scheme: Scheme = Field(description="the signature scheme")
    public_keys: PublicKeys = Field(
        (),
        description="the provider's public keys (sendgrid, discord, standard-webhooks v1a); "
        "any one may match",
    )
    secrets: Secrets = Field(
        (),
        validate_default=True,
        description="any one may match (rotation)",
        json_schema_extra={"missing": SECRETS_HINT},
    )
    public_url: PublicUrl = Field(
        "", description="twilio, square, hubspot: the URL given to the provider, which it signs"
    )
    id_from: Locators = Field((), alias="id", description="where the event id comes from")
    type_from: Locators = Field((), alias="type", description="where the event type comes from")
    keep_headers: HeaderNames = Field((), description="extra headers stored with the event")
    signature_header: Text | None = Field(
        None,
        validate_default=True,
        description="hmac: the header holding the signature (token: the token)",
    )
    signature_prefix: str = Field("", description="hmac: text before the signature")
    signature_encoding: HmacEncoding = Field("hex", description="hmac: the signature's encoding")
    signature_algorithm: HmacAlgorithm = Field("sha256", description="hmac: the hash")
    retry: RetryPolicy | None = Field(
        None, description="this source's retry policy, over workers.retry"
    )
    unhandled: Literal["ignore", "dead-letter"] = Field(
        "ignore", description="what becomes of an event no handler takes"
    )
    allow_ips: Networks = Field(
        (),
        description="addresses or CIDR ranges requests may come from (the client address, "
        "through server.trusted_proxies); others get 403. Empty: any",
    )
    replay_guard: bool | None = Field(
        None,
        description="refuse, as a duplicate, a second request whose signed content (body) "
        "was already accepted within the dedupe window, whatever its id; unset: on where "
        "the scheme's event id is not covered by the signature",
    )

    @field_validator("replay_guard")
    @classmethod
    def _needs_a_window(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value and info.data.get("dedupe_window") == 0:
            raise ValueError("needs a dedupe_window above 0 (the time it remembers a body)")
        return value

    @field_validator("secrets")
    @classmethod
    def _some_key(cls, value: tuple[Secret, ...], info: ValidationInfo) -> tuple[Secret, ...]:
        # Public keys alone will do (whether the scheme takes them is the scheme's to say,
        # at start-up); when public_keys is itself wrong, that is what gets reported.
        if not value and info.data.get("public_keys") == ():
            raise ValueError(
                f"missing; {SECRETS_HINT} (or public_keys, for a scheme keyed by them)"
            )
        return value

    @field_validator("signature_header")
    @classmethod
    def _required_for_hmac(cls, value: str | None, info: ValidationInfo) -> str | None:
        # An unknown scheme (absent from info.data) draws no error about hmac's keys.
        scheme = info.data.get("scheme")
        if value is None and scheme in ("hmac", "token"):
            raise ValueError(f"required for scheme {scheme!r} (for example 'X-Signature')")
        return value

    def named(self, name: str) -> SourceSettings:
        """This source as ``[sources.<name>]``, each secret's and public key's origin naming
        its key."""
        secrets, public_keys = (
            tuple(
                Secret(s.reveal(), f"sources.{name}.{key}[{i}]{s.origin}")
                for i, s in enumerate(getattr(self, key))
            )
            for key in ("secrets", "public_keys")
        )
        return self.model_copy(
            update={"name": name, "secrets": secrets, "public_keys": public_keys}
        )


class ServerSettings(Table):
    """Where the receiver listens and how it commits to Redis."""

    host: Text = Field("127.0.0.1", description="where the receiver listens")
    port: Port = Field(8080, description="the receiver's port")
    processes: Whole = Field(
        1, ge=1, le=256, description="receiver processes under hookline serve, on one port"
    )
    commit_delay: Duration = Field(
        0.0, description="longest a request waits for others to share its Redis round trip"
    )
    commit_batch: Whole = Field(
        256, ge=1, le=10_000, description="most events committed in one round trip"
    )
    retry_after: Whole = Field(5, ge=1, description="seconds a provider is told to wait after 503")
    wait_replicas: Whole = Field(
        0, ge=0, le=100, description="replicas that must confirm a write before a 2xx; 0 to skip"
    )
    wait_timeout: Duration = Field(0.5, description="longest the replicas are waited for")
    drain_delay: Duration = Field(
        1.0,
        description="after SIGTERM, how long /readyz answers 503 while requests are still "
        "served, so that a load balancer stops routing here before the listener closes",
    )
    body_timeout: Duration = Field(
        10.0, description="longest a request body may take to arrive before a 408"
    )
    keepalive_timeout: Duration = Field(
        DEFAULT_KEEPALIVE_TIMEOUT,
        gt=0,
        description="longest a connection may go without a complete request head, from when "
        "it opens and between requests (aiohttp keeps one timer for both); behind a load "
        "balancer it must exceed the balancer's idle timeout, or a request sent as the "
        "receiver closes gets a 502",
    )
    max_buffered: Whole = Field(
        DEFAULT_MAX_BUFFERED,
        ge=1,
        description="bytes of request bodies held at once, across all requests (bodies are "
        "buffered before they are authenticated, and counted as they arrive); a request "
        "whose body would go over it gets a 503. Unset, at least the largest max_body",
    )
    max_buffered_per_client: Whole | None = Field(
        None,
        ge=1,
        description="the share of max_buffered the bodies from one client address may hold "
        "at once; more gets a 503. Unset: a quarter of max_buffered, at least the largest "
        "max_body",
    )
    min_body_rate: Whole = Field(
        DEFAULT_MIN_BODY_RATE,
        ge=1,
        description="bytes per second a body must keep arriving at, after its first second "
        "(a body slower than that is answered 408, before body_timeout)",
    )
    trusted_proxies: Networks = Field(
        (),
        description="addresses or CIDR ranges of the proxies in front of the receiver: from "
        "them X-Forwarded-For is believed (its rightmost address that is not a trusted "
        "proxy is the client). Empty: the peer address is the client",
    )


class WorkerSettings(Table):
    """How workers find and run handlers."""

    handlers: StrList = Field((), description="modules whose @on(...) functions handle events")
    queues: StrList = Field((DEFAULT_QUEUE,), description="queues worked, in priority order")
    processes: Whole = Field(1, ge=1, le=256, description="worker processes under hookline work")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="the retry policy")
    handler_timeout: Duration = Field(30.0, description="a handler running longer is interrupted")
    dead_letter_retention: Duration | None = Field(
        None, description="dead letters older than this are deleted; unset, they are kept"
    )


class ConsoleSettings(Table):
    """The on-call web console."""

    host: Text = Field("127.0.0.1", description="where the console listens")
    port: Port = Field(8081, description="the console's port")
    token: ConsoleToken | None = Field(
        None, description="the login token (24 characters at least); none: not served"
    )
    allowed_hosts: StrList = Field(
        (),
        description="host names the console answers to (the Host header, without port); "
        "others get 421. Empty: localhost, 127.0.0.1, ::1 and console.host",
    )
    secure_cookies: bool | None = Field(
        None,
        description="mark the session cookie Secure; unset: when the request came over "
        "HTTPS, to the console or through a proxy of server.trusted_proxies that says so "
        "in X-Forwarded-Proto",
    )


class MetricsSettings(Table):
    """Where Prometheus metrics are served; off (port 0) unless configured."""

    host: Text = Field("127.0.0.1", description="where Prometheus scrapes /metrics")
    receiver_port: Port = Field(0, description="the receiver's metrics; 0: not served")
    worker_port: Port = Field(0, description="the workers' metrics; 0: not served")


class RedisSettings(Table):
    """The Redis server events are committed to."""

    url: RedisUrl | None = Field(None, description="redis://, rediss://, unix:// or sentinel URL")


class Settings(Table):
    """The whole configuration."""

    redis: RedisSettings = Field(default_factory=RedisSettings, description="the Redis server")
    receiver: SourceDefaults = Field(
        default_factory=SourceDefaults, description="defaults for every source"
    )
    workers: WorkerSettings = Field(default_factory=WorkerSettings, description="the workers")
    console: ConsoleSettings = Field(default_factory=ConsoleSettings, description="the console")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="metrics")
    # Fields are validated in this order: sources after receiver and workers, whose values
    # they inherit, and server after sources, whose bodies it must have room for.
    sources: Mapping[SourceName, SourceSettings] = Field(
        default_factory=dict, description="the webhook sources, by the name in their URL"
    )
    server: ServerSettings = Field(
        default_factory=ServerSettings, validate_default=True, description="the receiver"
    )
    path: Annotated[Path | None, NOT_A_KEY] = Field(None, description="the file read, if any")

    @property
    def redis_url(self) -> str | None:
        """``redis.url`` (or ``HOOKLINE_REDIS_URL``); ``None`` when neither is set."""
        return self.redis.url

    def source_retry(self, source: str) -> RetryPolicy:
        """The retry policy that applies to ``source``."""
        src = self.sources.get(source)
        return src.retry if src is not None and src.retry is not None else self.workers.retry

    @field_validator("sources", mode="wrap")
    @classmethod
    def _inherit_and_name(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> dict[str, SourceSettings]:
        if isinstance(value, dict):
            value = {name: _inherit(table, info.data) for name, table in value.items()}
        sources: dict[str, SourceSettings] = handler(value)
        return {name: src.named(name) for name, src in sources.items()}

    @field_validator("server")
    @classmethod
    def _room_for_every_body(cls, server: ServerSettings, info: ValidationInfo) -> ServerSettings:
        # Without valid sources (an error is reported there) this is checked once they are.
        sources: Mapping[str, SourceSettings] = info.data.get("sources") or {}
        largest = max(sources.values(), key=lambda src: src.max_body, default=None)
        biggest = largest.max_body if largest is not None else 0
        update: dict[str, int] = {}
        if biggest > server.max_buffered:
            if "max_buffered" in server.model_fields_set:
                assert largest is not None
                raise problem_at(
                    "max_buffered",
                    f"{server.max_buffered} is less than sources.{largest.name}.max_body "
                    f"({largest.max_body}); raise it to at least that",
                )
            update["max_buffered"] = biggest
        total = update.get("max_buffered", server.max_buffered)
        share = server.max_buffered_per_client
        if share is None:
            update["max_buffered_per_client"] = min(total, max(total // 4, biggest))
        elif share > total:
            raise problem_at(
                "max_buffered_per_client",
                f"{share} is more than max_buffered ({total}); lower it to at most that",
            )
        elif share < biggest:
            assert largest is not None
            raise problem_at(
                "max_buffered_per_client",
                f"{share} is less than sources.{largest.name}.max_body ({biggest}); a body "
                "that large could never be received: raise it to at least that",
            )
        return server.model_copy(update=update) if update else server


def _inherit(table: Any, tables: Mapping[str, Any]) -> Any:
    """A source's table with the keys it leaves unset taken from the validated
    ``[receiver]`` and ``[workers.retry]`` (not when those are wrong: they are reported)."""
    if not isinstance(table, dict):
        return table
    filled = dict(table)
    receiver: SourceDefaults | None = tables.get("receiver")
    if receiver is not None:
        for key in receiver.model_fields_set:
            filled.setdefault(key, getattr(receiver, key))
    workers: WorkerSettings | None = tables.get("workers")
    if workers is not None and isinstance(table.get("retry"), dict):
        filled["retry"] = {**workers.retry.model_dump(), **table["retry"]}
    return filled
