"""Configuration: the example parses, every problem names its key, secrets never show."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from hookline.config.messages import key_paths
from hookline.config.settings import (
    CONFIG_ENV,
    DEFAULT_DEDUPE_WINDOW,
    REDIS_URL_ENV,
    RetryPolicy,
    Secret,
    Settings,
    SourceSettings,
    load_settings,
    parse_duration,
    parse_settings,
)
from hookline.errors import ConfigError
from hookline.ingest.app import create_app

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "example.toml"
DEV = Path(__file__).resolve().parent.parent / "hookline" / "config" / "dev.toml"

#: The environment variables config/example.toml reads its secrets from.
EXAMPLE_ENV = {
    "STRIPE_WEBHOOK_SECRET": "whsec_stripe_value",
    "GITHUB_WEBHOOK_SECRET": "github value",
    "SHOPIFY_CLIENT_SECRET": "shopify value",
    "SLACK_SIGNING_SECRET": "slack value",
    "ACME_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "LEGACY_SECRET": "legacy value",
    "SENDGRID_VERIFICATION_KEY": (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3G"
        "Rqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
    ),
    "TWILIO_AUTH_TOKEN": "twilio value",
}


def source(**fields: Any) -> dict[str, Any]:
    """A valid stripe source table, with ``fields`` replaced or added."""
    return {"scheme": "stripe", "secrets": ["whsec_x"], **fields}


def keys_in(table: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """The dotted keys a parsed TOML file sets, with ``*`` for each source's name."""
    for key, value in table.items():
        if prefix == "sources.":
            yield from keys_in(value, "sources.*.")
        elif isinstance(value, dict):
            yield from keys_in(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def error_of(data: dict[str, Any], env: dict[str, str] | None = None) -> str:
    """The message of the ConfigError that parsing ``data`` raises."""
    with pytest.raises(ConfigError) as info:
        parse_settings(data, env or {})
    return str(info.value)


class TestExampleConfig:
    def test_example_parses_when_its_secrets_are_set(self) -> None:
        """config/example.toml is valid once the environment variables it names are set."""
        settings = load_settings(EXAMPLE, EXAMPLE_ENV)
        assert sorted(settings.sources) == [
            "acme",
            "github",
            "legacy",
            "sendgrid",
            "shopify",
            "slack",
            "stripe",
            "twilio",
        ]
        assert settings.redis_url == "redis://127.0.0.1:6379/0"
        assert (settings.server.host, settings.server.port) == ("0.0.0.0", 8080)  # noqa: S104 -- read, not bound
        assert settings.sources["stripe"].secrets[0].reveal() == "whsec_stripe_value"
        assert settings.sources["github"].max_body == 26_214_400
        assert settings.sources["acme"].queue == "acme"
        assert settings.sources["stripe"].dedupe_window == 3 * 86400
        assert settings.sources["stripe"].tolerance == 300
        legacy = settings.sources["legacy"]
        assert (legacy.id_from, legacy.type_from) == (("header:x-request-id",), ("body:event",))
        assert settings.workers.retry.max_delay == 3600
        assert settings.workers.handler_timeout == 30
        assert settings.server.keepalive_timeout == 75
        assert settings.path == EXAMPLE

    def test_example_shows_every_key_and_only_known_ones(self) -> None:
        """config/example.toml sets every key the schema declares, and none that it does not."""
        shown = set(keys_in(tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))))
        declared = set(key_paths())
        assert sorted(declared - shown) == [], "keys missing from config/example.toml"
        assert sorted(shown - declared) == [], "keys in config/example.toml the schema lacks"

    def test_the_key_list_is_derived_from_the_schema(self) -> None:
        """The schema's key list holds nested tables, per-source keys and aliases, and leaves
        out what the loader fills in, so the comparison above means what it says."""
        declared = set(key_paths())
        assert {"redis.url", "workers.retry.max_delay", "sources.*.retry.max_attempts"} <= declared
        assert {"sources.*.id", "sources.*.type", "server.max_buffered"} <= declared
        assert not {"path", "sources.*.name", "sources.*.id_from", "workers.retry"} & declared

    def test_example_receiver_builds(self) -> None:
        """Every source of the example turns into a working receiver configuration."""
        create_app(load_settings(EXAMPLE, EXAMPLE_ENV))

    def test_example_without_secrets_names_every_missing_variable(self) -> None:
        """Without the environment, each secret's key and variable is named, all at once."""
        with pytest.raises(ConfigError) as info:
            load_settings(EXAMPLE, {})
        message = str(info.value)
        assert str(EXAMPLE) in message
        for name, variable in [
            ("stripe", "STRIPE_WEBHOOK_SECRET"),
            ("github", "GITHUB_WEBHOOK_SECRET"),
            ("shopify", "SHOPIFY_CLIENT_SECRET"),
            ("slack", "SLACK_SIGNING_SECRET"),
            ("acme", "ACME_WEBHOOK_SECRET"),
            ("legacy", "LEGACY_SECRET"),
        ]:
            assert f"sources.{name}.secrets[0]: environment variable {variable} is not set" in (
                message
            )

    def test_dev_config_parses_without_environment(self) -> None:
        """The configuration `hookline dev` uses needs nothing from the environment."""
        settings = load_settings(DEV, {})
        assert list(settings.sources) == ["demo"]
        assert settings.redis_url is None
        create_app(settings, "redis://127.0.0.1:1/0")


class TestParseSettings:
    def test_minimal_source_gets_the_documented_defaults(self) -> None:
        """A source with only a scheme and a secret gets the README's defaults."""
        settings = parse_settings({"sources": {"s": source()}}, {})
        src = settings.sources["s"]
        assert src.dedupe_window == DEFAULT_DEDUPE_WINDOW == 3 * 86400
        assert (src.tolerance, src.max_body, src.max_queue_depth) == (300, 1024**2, 100_000)
        assert src.queue == "hookline"
        assert settings.redis_url is None
        assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
        assert (settings.server.body_timeout, settings.server.keepalive_timeout) == (10, 75)

    def test_max_buffered_defaults_to_64_mib_or_the_largest_body(self) -> None:
        """server.max_buffered is 64 MiB unless set, raised to the largest max_body if that is
        more, so that every source's largest event can still arrive."""
        small = parse_settings({"sources": {"s": source()}}, {})
        assert small.server.max_buffered == 64 * 1024**2
        huge = 100 * 1024**2
        large = parse_settings({"sources": {"s": source(), "big": source(max_body=huge)}}, {})
        assert large.server.max_buffered == huge
        chosen = parse_settings(
            {"server": {"max_buffered": 4096}, "sources": {"s": source(max_body=10)}}, {}
        )
        assert chosen.server.max_buffered == 4096

    def test_receiver_table_sets_defaults_a_source_may_override(self) -> None:
        """receiver.* applies to every source unless the source sets its own value."""
        settings = parse_settings(
            {
                "receiver": {"tolerance": "1m", "queue": "q", "max_body": 10},
                "sources": {"a": source(), "b": source(max_body=20, queue="other")},
            },
            {},
        )
        a, b = settings.sources["a"], settings.sources["b"]
        assert (a.tolerance, a.queue, a.max_body) == (60, "q", 10)
        assert (b.tolerance, b.queue, b.max_body) == (60, "other", 20)

    def test_locators_and_kept_headers_are_normalised(self) -> None:
        """Header locators and kept headers are lower-cased; body paths keep their case."""
        settings = parse_settings(
            {
                "sources": {
                    "s": source(
                        id="header:X-Request-Id",
                        type=["body:Event.Type", "header:X-Kind"],
                        keep_headers=["X-Trace"],
                    )
                }
            },
            {},
        )
        src = settings.sources["s"]
        assert src.id_from == ("header:x-request-id",)
        assert src.type_from == ("body:Event.Type", "header:x-kind")
        assert src.keep_headers == ("x-trace",)

    def test_env_secret_is_read_from_the_given_environment(self) -> None:
        """A secret given as {env = NAME} takes the variable's value."""
        settings = parse_settings(
            {"sources": {"s": source(secrets=[{"env": "MY_SECRET"}, "literal"])}},
            {"MY_SECRET": "from-env"},
        )
        assert [s.reveal() for s in settings.sources["s"].secrets] == ["from-env", "literal"]

    def test_redis_url_env_overrides_the_file(self) -> None:
        """HOOKLINE_REDIS_URL wins over redis.url; without it redis.url is used."""
        data = {"redis": {"url": "redis://file:6379/0"}}
        assert parse_settings(data, {}).redis_url == "redis://file:6379/0"
        env = {REDIS_URL_ENV: "redis://env:6379/1"}
        assert parse_settings(data, env).redis_url == "redis://env:6379/1"
        assert parse_settings({}, env).redis_url == "redis://env:6379/1"

    @pytest.mark.parametrize(
        "url",
        [
            "redis://localhost:6379/0",
            "rediss://user:pw@redis.example:6380/1",
            "unix:///var/run/redis.sock",
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0",
        ],
    )
    def test_every_supported_redis_url_scheme_is_accepted(self, url: str) -> None:
        """redis://, rediss://, unix:// and redis+sentinel:// URLs are all valid."""
        assert parse_settings({"redis": {"url": url}}, {}).redis_url == url
        assert parse_settings({}, {REDIS_URL_ENV: url}).redis_url == url

    def test_console_token_env_overrides_the_file(self) -> None:
        """HOOKLINE_CONSOLE_TOKEN wins over console.token, and is kept as a Secret."""
        settings = parse_settings(
            {"console": {"token": "file-token"}}, {"HOOKLINE_CONSOLE_TOKEN": "env-token"}
        )
        assert settings.console.token is not None
        assert settings.console.token.reveal() == "env-token"

    def test_source_retry_falls_back_to_the_workers_policy(self) -> None:
        """A source without its own retry table uses workers.retry; one with it overrides."""
        settings = parse_settings(
            {
                "workers": {"retry": {"max_attempts": 3}},
                "sources": {"a": source(), "b": source(retry={"max_attempts": 7})},
            },
            {},
        )
        assert settings.source_retry("a").max_attempts == 3
        assert settings.source_retry("b").max_attempts == 7
        assert settings.source_retry("b").base_delay == settings.workers.retry.base_delay


class TestConfigErrors:
    @pytest.mark.parametrize(
        ("data", "env", "expected"),
        [
            pytest.param({"redus": {}}, {}, "redus: unknown key", id="unknown-top-level-key"),
            pytest.param(
                {"server": {"prot": 1}}, {}, "server.prot: unknown key", id="unknown-server-key"
            ),
            pytest.param(
                {"sources": {"s": source(secret="x")}},
                {},
                "sources.s.secret: unknown key",
                id="unknown-source-key",
            ),
            pytest.param(
                {"sources": {"s": source(scheme="strip")}},
                {},
                "sources.s.scheme: expected one of standard-webhooks, svix, stripe",
                id="bad-scheme",
            ),
            pytest.param(
                {"sources": {"s": {"secrets": ["x"]}}},
                {},
                "sources.s.scheme: missing; set one of standard-webhooks, svix, stripe",
                id="missing-scheme",
            ),
            pytest.param(
                {"sources": {"s": {"scheme": "stripe"}}},
                {},
                "sources.s.secrets: missing",
                id="missing-secrets",
            ),
            pytest.param(
                {"sources": {"s": source(secrets=[])}},
                {},
                "sources.s.secrets: empty",
                id="empty-secrets",
            ),
            pytest.param(
                {"sources": {"s": source(secrets=[""])}},
                {},
                "sources.s.secrets[0]: expected a string or {env = NAME}",
                id="empty-secret-string",
            ),
            pytest.param(
                {"sources": {"s": source(secrets=["ok", {"env": "STRIPE_WEBHOOK_SECRET"}])}},
                {},
                "sources.s.secrets[1]: environment variable STRIPE_WEBHOOK_SECRET is not set; "
                "export STRIPE_WEBHOOK_SECRET",
                id="env-secret-not-set",
            ),
            pytest.param(
                {"sources": {"s": source(secrets=[{"env": "EMPTY"}])}},
                {"EMPTY": ""},
                "sources.s.secrets[0]: environment variable EMPTY is not set",
                id="env-secret-empty",
            ),
            pytest.param(
                {"sources": {"s": source(secrets=[{"variable": "X"}])}},
                {},
                "sources.s.secrets[0]: expected a string or {env = NAME}",
                id="bad-secret-table",
            ),
            pytest.param(
                {"sources": {"s": source(tolerance="5 minutes")}},
                {},
                "sources.s.tolerance: expected a duration such as 30, '5m' or '3d'",
                id="bad-duration",
            ),
            pytest.param(
                {"receiver": {"dedupe_window": -1}},
                {},
                "receiver.dedupe_window: a duration cannot be negative",
                id="negative-duration",
            ),
            pytest.param(
                {"sources": {"s": source(dedupe_window=True)}},
                {},
                "sources.s.dedupe_window: expected a duration",
                id="boolean-duration",
            ),
            pytest.param(
                {"sources": {"s": source(tolerance=math.nan)}},
                {},
                "sources.s.tolerance: expected a duration",
                id="nan-duration",
            ),
            pytest.param(
                {"sources": {"s": source(dedupe_window=math.inf)}},
                {},
                "sources.s.dedupe_window: expected a duration",
                id="infinite-duration",
            ),
            pytest.param(
                {"sources": {"s": source(scheme="hmac")}},
                {},
                "sources.s.signature_header: required for scheme 'hmac'",
                id="hmac-without-signature-header",
            ),
            pytest.param(
                {
                    "sources": {
                        "s": source(
                            scheme="hmac",
                            signature_header="X-Sig",
                            **{"signature_encoding": "base32"},
                        )
                    }
                },
                {},
                "sources.s.signature_encoding: expected one of hex, base64, got 'base32'",
                id="hmac-bad-encoding",
            ),
            pytest.param(
                {
                    "sources": {
                        "s": source(
                            scheme="hmac",
                            signature_header="X-Sig",
                            **{"signature_algorithm": "md5"},
                        )
                    }
                },
                {},
                "sources.s.signature_algorithm: expected one of sha1, sha256, sha512, got 'md5'",
                id="hmac-bad-algorithm",
            ),
            pytest.param(
                {"sources": {"s": source(id="query:id")}},
                {},
                "sources.s.id: expected 'header:<name>' or 'body:<json.path>', got 'query:id'",
                id="bad-locator",
            ),
            pytest.param(
                {"sources": {"s": source(type=["body:type", "type"])}},
                {},
                "sources.s.type: expected 'header:<name>' or 'body:<json.path>', got 'type'",
                id="bad-locator-in-list",
            ),
            pytest.param(
                {"server": {"port": 70000}},
                {},
                "server.port: must be between 0 and 65535, got 70000",
                id="port-too-large",
            ),
            pytest.param(
                {"server": {"port": "8080"}},
                {},
                "server.port: expected a whole number, got '8080'",
                id="port-as-string",
            ),
            pytest.param(
                {"console": {"port": -1}},
                {},
                "console.port: must be between 0 and 65535, got -1",
                id="console-port-negative",
            ),
            pytest.param(
                {"server": {"keepalive_timeout": 0}},
                {},
                "server.keepalive_timeout: must be more than 0, got 0",
                id="zero-keepalive-timeout",
            ),
            pytest.param(
                {"sources": {"s": source(max_body=0)}},
                {},
                "sources.s.max_body: must be at least 1, got 0",
                id="zero-max-body",
            ),
            pytest.param(
                {"server": {"max_buffered": 0}},
                {},
                "server.max_buffered: must be at least 1, got 0",
                id="zero-max-buffered",
            ),
            pytest.param(
                {"server": {"max_buffered": 1000}, "sources": {"s": source(max_body=2000)}},
                {},
                "server.max_buffered: 1000 is less than sources.s.max_body (2000); "
                "raise it to at least that",
                id="max-buffered-below-max-body",
            ),
            pytest.param(
                {"sources": {"s": source(queue="has space")}},
                {},
                "sources.s.queue: expected a name of letters, digits",
                id="bad-queue-name",
            ),
            pytest.param(
                {"sources": {"has space": source()}},
                {},
                "sources.has space: a source name may hold letters, digits",
                id="bad-source-name",
            ),
            pytest.param({"server": 3}, {}, "server: expected a table, got int", id="not-a-table"),
            pytest.param(
                {"sources": {"s": 3}}, {}, "sources.s: expected a table, got int", id="source-int"
            ),
            pytest.param(
                {"workers": {"retry": {"base_delay": "10s", "max_delay": "1s"}}},
                {},
                "workers.retry.max_delay: must be at least base_delay",
                id="retry-delays-inverted",
            ),
            pytest.param(
                {"sources": {"s": source(unhandled="drop")}},
                {},
                "sources.s.unhandled: expected one of ignore, dead-letter, got 'drop'",
                id="bad-unhandled",
            ),
            pytest.param(
                {"redis": {"url": ""}},
                {},
                "redis.url: expected a redis://, rediss://, unix:// or redis+sentinel:// URL",
                id="empty-url",
            ),
            pytest.param(
                {"redis": {"url": "localhost:6379"}},
                {},
                "redis.url: expected a redis://, rediss://, unix:// or redis+sentinel:// URL",
                id="url-without-scheme",
            ),
            pytest.param(
                {},
                {REDIS_URL_ENV: "http://localhost:6379"},
                f"{REDIS_URL_ENV}: expected a redis://, rediss://, unix:// or redis+sentinel://",
                id="env-url-without-redis-scheme",
            ),
        ],
    )
    def test_each_problem_names_its_key(
        self, data: dict[str, Any], env: dict[str, str], expected: str
    ) -> None:
        """Each invalid value is reported with the dotted key it concerns and what is expected."""
        message = error_of(data, env)
        assert message.startswith("invalid configuration:\n")
        assert expected in message

    def test_a_bad_scheme_is_reported_alone(self) -> None:
        """A mistyped scheme yields one error about the scheme, not about other schemes' keys."""
        message = error_of({"sources": {"s": source(scheme="strip")}})
        assert message.count("\n") == 1, message

    def test_every_problem_is_reported_at_once(self, tmp_path: Path) -> None:
        """Several problems in one file are all listed, one a line, under the file's name."""
        path = tmp_path / "hookline.toml"
        path.write_text(
            """
            colour = "blue"
            [server]
            port = 99999
            [sources.a]
            scheme = "nope"
            secrets = []
            [sources.b]
            scheme = "hmac"
            secrets = [{ env = "B_SECRET" }]
            tolerance = "soon"
            """
        )
        with pytest.raises(ConfigError) as info:
            load_settings(path, {})
        first, *lines = str(info.value).splitlines()
        assert first == f"invalid configuration in {path}:"
        keys = [line.strip().split(":")[0] for line in lines]
        assert keys == [
            "colour",
            "server.port",
            "sources.a.scheme",
            "sources.a.secrets",
            "sources.b.secrets[0]",
            "sources.b.tolerance",
            "sources.b.signature_header",
        ]

    def test_error_messages_never_contain_secret_values(self) -> None:
        """Secrets given in the file do not appear in the error listing other problems."""
        message = error_of(
            {"sources": {"s": source(secrets=["whsec_do_not_print"], tolerance="never")}}
        )
        assert "whsec_do_not_print" not in message

    def test_no_secret_value_appears_wherever_it_is_misplaced(self) -> None:
        """Secrets inline, from the environment, misplaced, mistyped or beside other errors,
        the console token and Redis passwords: the listing names each key, no value."""
        data = {
            "redis": {"url": "http://user:file-redis-password@host"},
            "console": {"token": 987654321, "port": -1},
            "sources": {
                "s": source(
                    secrets=[
                        "whsec_inline_value",
                        {"env": "S1"},
                        424242,
                        {"env": "S2", "value": "table-secret-value"},
                    ],
                    secret="typo-key-secret",
                    tolerance="never",
                ),
                "t": source(secrets="whsec_not_a_list"),
                "u": source(scheme="nope", secrets=["u-secret-value"]),
            },
        }
        env = {"S1": "env-secret-value", REDIS_URL_ENV: "ftp://:env-redis-password@h"}
        message = error_of(data, env)
        for key in [
            REDIS_URL_ENV,
            "console.token",
            "console.port",
            "sources.s.secrets[2]",
            "sources.s.secrets[3]",
            "sources.s.secret:",
            "sources.s.tolerance",
            "sources.t.secrets",
            "sources.u.scheme",
        ]:
            assert f"\n  {key}" in message, key
        for value in [
            "file-redis-password",
            "env-redis-password",
            "987654321",
            "whsec_inline_value",
            "env-secret-value",
            "424242",
            "table-secret-value",
            "typo-key-secret",
            "whsec_not_a_list",
            "u-secret-value",
        ]:
            assert value not in message, value

    def test_messages_carry_none_of_pydantics_noise(self) -> None:
        """A listing is hookline's lines only: no pydantic banner, URL, type tag or input."""
        message = error_of(
            {
                "server": {"port": "x", "prot": 1, "keepalive_timeout": 0, "host": 5},
                "workers": {"retry": 3, "processes": 1.5},
                "sources": {"s": {"scheme": "hmac"}, "t": 3},
                "metrics": [],
            }
        )
        for noise in ("validation error", "pydantic", "input_type", "input_value", "[type="):
            assert noise not in message.lower(), noise
        assert all(line.startswith("  ") and ": " in line for line in message.splitlines()[1:])

    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            ({"servr": {}}, "servr: unknown key; did you mean server?"),
            ({"server": {"prot": 1}}, "server.prot: unknown key; did you mean port?"),
            ({"sources": {"s": source(secret="x")}}, "sources.s.secret: unknown key; did you mean"),
            (
                {"workers": {"retry": {"max_attempt": 3}}},
                "workers.retry.max_attempt: unknown key; did you mean max_attempts?",
            ),
            (
                {"sources": {"s": source(name="other")}},
                "sources.s.name: unknown key; expected one of allow_ips, dedupe_window, id",
            ),
            ({"path": "x.toml"}, "path: unknown key; expected one of console, metrics"),
        ],
    )
    def test_an_unknown_key_gets_the_closest_known_one(
        self, data: dict[str, Any], expected: str
    ) -> None:
        """An unknown key is named in full with the closest known key, or the known keys; the
        attributes the loader fills in (a source's name, the file's path) are not keys."""
        assert expected in error_of(data)

    def test_a_source_retry_is_checked_with_what_it_inherits(self) -> None:
        """A source's retry table inherits workers.retry before max_delay >= base_delay is
        checked, so an inherited base_delay above the source's max_delay is reported there."""
        message = error_of(
            {
                "workers": {"retry": {"base_delay": "1m", "max_delay": "2h"}},
                "sources": {"s": source(retry={"max_delay": "30s"})},
            }
        )
        assert message.splitlines()[1:] == [
            "  sources.s.retry.max_delay: must be at least base_delay (60 s), got 30 s"
        ]


class TestParseDuration:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            (300, 300.0),
            (1.5, 1.5),
            ("300", 300.0),
            ("300ms", 0.3),
            ("30s", 30.0),
            ("5m", 300.0),
            ("2h", 7200.0),
            ("3d", 259200.0),
            (" 1.5 h ", 5400.0),
            (0, 0.0),
        ],
    )
    def test_numbers_and_unit_strings_are_seconds(self, value: object, seconds: float) -> None:
        """A number is seconds; a string may carry ms, s, m, h or d."""
        assert parse_duration(value) == pytest.approx(seconds)

    @pytest.mark.parametrize(
        "value", [-1, "-5m", "5w", "m", "", None, True, [1], math.nan, math.inf, "nan", "inf"]
    )
    def test_anything_else_is_refused(self, value: object) -> None:
        """Negative, non-finite, unit-less garbage and non-numbers raise ValueError."""
        with pytest.raises(ValueError, match="duration"):
            parse_duration(value)


class TestLoadSettings:
    def test_no_file_named_says_how_to_name_one(self) -> None:
        """Without a path or HOOKLINE_CONFIG the error names both ways to give one."""
        with pytest.raises(ConfigError, match=f"pass --config FILE or set {CONFIG_ENV}"):
            load_settings(None, {})

    def test_hookline_config_names_the_file(self, tmp_path: Path) -> None:
        """HOOKLINE_CONFIG is used when no path is passed."""
        path = tmp_path / "c.toml"
        path.write_text('[sources.s]\nscheme = "stripe"\nsecrets = ["whsec_x"]\n')
        settings = load_settings(None, {CONFIG_ENV: str(path)})
        assert list(settings.sources) == ["s"]
        assert settings.path == path

    def test_missing_file(self, tmp_path: Path) -> None:
        """A path that does not exist is reported as such, with the path."""
        path = tmp_path / "absent.toml"
        with pytest.raises(ConfigError, match=f"configuration file {path} does not exist"):
            load_settings(path, {})

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A path that cannot be read (here a directory) is reported with the path and why."""
        with pytest.raises(ConfigError, match=f"cannot read configuration file {tmp_path}"):
            load_settings(tmp_path, {})

    def test_file_that_is_not_utf8(self, tmp_path: Path) -> None:
        """A file that is not UTF-8 text is reported as unreadable, not as a traceback."""
        path = tmp_path / "latin1.toml"
        path.write_bytes(b'[server]\nhost = "caf\xe9"\n')
        with pytest.raises(ConfigError, match=f"cannot read configuration file {path}"):
            load_settings(path, {})

    def test_invalid_toml_names_file_and_line(self, tmp_path: Path) -> None:
        """A TOML syntax error is reported with the file and the line it is on."""
        path = tmp_path / "broken.toml"
        path.write_text('[server]\nport = 80\nhost = "unterminated\n')
        with pytest.raises(ConfigError) as info:
            load_settings(path, {})
        message = str(info.value)
        assert message.startswith(f"{path} is not valid TOML:")
        assert "line 3" in message


class TestSecret:
    def test_repr_and_str_hide_the_value(self) -> None:
        """A Secret's repr and str show where it came from, never its value."""
        secret = Secret("hunter2-very-secret", "sources.s.secrets[0]")
        for text in (repr(secret), str(secret), f"{secret}", repr([secret])):
            assert "hunter2" not in text
            assert "sources.s.secrets[0]" in text
        assert secret.reveal() == "hunter2-very-secret"

    def test_settings_repr_hides_every_secret(self) -> None:
        """Printing the whole Settings object shows no secret value, file or environment."""
        settings = parse_settings(
            {
                "sources": {"s": source(secrets=["whsec_in_file", {"env": "S"}])},
                "console": {"token": "console-token-value"},
            },
            {"S": "value-from-env"},
        )
        text = repr(settings) + str(settings)
        for value in ("whsec_in_file", "value-from-env", "console-token-value"):
            assert value not in text

    def test_env_secret_origin_names_key_and_variable(self) -> None:
        """A secret from the environment says which key and which variable it came from."""
        settings = parse_settings({"sources": {"s": source(secrets=[{"env": "S"}])}}, {"S": "v"})
        origin = settings.sources["s"].secrets[0].origin
        assert "sources.s.secrets[0]" in origin
        assert "S" in origin

    def test_equal_by_value(self) -> None:
        """Two secrets with the same value are equal whatever their origin."""
        assert Secret("a", "x") == Secret("a", "y")
        assert Secret("a", "x") != Secret("b", "x")
        assert len({Secret("a", "x"), Secret("a", "y")}) == 1


class TestCreateAppConfig:
    def test_standard_webhooks_secret_with_bad_base64_names_its_key(self) -> None:
        """A standard-webhooks secret that is not base64 stops create_app with its key."""
        settings = parse_settings(
            {
                "redis": {"url": "redis://127.0.0.1:1/0"},
                "sources": {"acme": source(scheme="standard-webhooks", secrets=["whsec_!!!not"])},
            },
            {},
        )
        with pytest.raises(ConfigError) as info:
            create_app(settings)
        message = str(info.value)
        assert message.startswith("sources.acme.secrets[0]:")
        assert "base64" in message
        assert "!!!not" not in message

    def test_bad_base64_from_environment_names_key_and_variable(self) -> None:
        """The same error for a secret from the environment names the key and the variable."""
        settings = parse_settings(
            {
                "redis": {"url": "redis://127.0.0.1:1/0"},
                "sources": {"acme": source(scheme="svix", secrets=[{"env": "ACME_SECRET"}])},
            },
            {"ACME_SECRET": "whsec_%%%"},
        )
        with pytest.raises(ConfigError) as info:
            create_app(settings)
        message = str(info.value)
        assert "sources.acme.secrets[0]" in message
        assert "ACME_SECRET" in message
        assert "%%%" not in message

    def test_no_redis_url_is_a_config_error(self) -> None:
        """Without redis.url, HOOKLINE_REDIS_URL or an explicit URL, create_app names the key."""
        with pytest.raises(ConfigError, match=r"redis\.url: not set"):
            create_app(Settings())


class TestSchema:
    def test_every_key_says_what_it_means(self) -> None:
        """Each key of every table carries a description, the one place its meaning is said."""
        tables = [Settings, *(f.annotation for f in Settings.model_fields.values())]
        tables += [SourceSettings, RetryPolicy]
        for table in tables:
            if isinstance(table, type) and issubclass(table, BaseModel):
                for name, field in table.model_fields.items():
                    assert field.description, f"{table.__name__}.{name}"
