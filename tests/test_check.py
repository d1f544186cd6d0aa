"""``hookline check``: configuration, sources and Redis, against real redis-servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from hookline.cli.check import Finding, check_redis, render, run_checks
from hookline.cli.main import main
from hookline.redis.connection import mask_url
from hookline.redis.embedded import EmbeddedRedis, free_port
from tests.cluster import SentinelServer

from .conftest import GITHUB_SECRET, STRIPE_SECRET

GOOD = f"""
[sources.stripe]
scheme = "stripe"
secrets = ["{STRIPE_SECRET}"]

[sources.github]
scheme = "github"
secrets = [{{ env = "GITHUB_WEBHOOK_SECRET" }}]
"""


def write(tmp_path: Path, text: str) -> str:
    """Write a configuration file and return its path."""
    path = tmp_path / "hookline.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def levels(findings: list[Finding], level: str) -> list[str]:
    """The messages of the findings at ``level``."""
    return [f.message for f in findings if f.level == level]


@pytest.fixture
def redis_with() -> Iterator[list[EmbeddedRedis]]:
    """Start redis-servers with extra arguments by appending to the list; all stopped after."""
    servers: list[EmbeddedRedis] = []
    yield servers
    for server in servers:
        server.close()


def start(servers: list[EmbeddedRedis], *extra: str) -> str:
    """Start a redis-server whose argv ends with ``extra`` (later arguments win); its URL."""
    server = EmbeddedRedis(extra=extra)
    servers.append(server)
    server.start()
    return server.url


class TestConfig:
    def test_valid_configuration_and_healthy_redis_have_no_error(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        """A valid file, buildable sources and a durable Redis give only ok and info lines."""
        path = write(tmp_path, GOOD)
        env = {"GITHUB_WEBHOOK_SECRET": GITHUB_SECRET, "HOOKLINE_REDIS_URL": redis_url}
        findings = run_checks(path, env)
        assert {f.level for f in findings} <= {"ok", "info"}
        assert any("source github: scheme github" in m for m in levels(findings, "ok"))
        assert any("Redis at" in m for m in levels(findings, "ok"))

    def test_missing_file_is_an_error(self, tmp_path: Path) -> None:
        """A configuration file that does not exist is one error naming it."""
        findings = run_checks(str(tmp_path / "nope.toml"), {})
        assert levels(findings, "error") == [
            f"configuration file {tmp_path / 'nope.toml'} does not exist"
        ]

    def test_no_configuration_named_is_an_error(self) -> None:
        """Without --config nor HOOKLINE_CONFIG, check says how to name one."""
        errors = levels(run_checks(None, {}), "error")
        assert len(errors) == 1 and "--config" in errors[0]

    def test_each_problem_is_its_own_error(self, tmp_path: Path) -> None:
        """Every invalid key is reported as a separate error, with its key."""
        path = write(tmp_path, GOOD + '\n[server]\nport = "x"\nbogus = 1\n')
        env = {"GITHUB_WEBHOOK_SECRET": GITHUB_SECRET}
        errors = levels(run_checks(path, env), "error")
        assert len(errors) == 2
        assert any("server.port" in e for e in errors)
        assert any("server.bogus: unknown key" in e for e in errors)

    def test_missing_env_secret_names_the_source(self, tmp_path: Path, redis_url: str) -> None:
        """An unset secret variable reads as "secrets missing for source X" and the variable."""
        path = write(tmp_path, GOOD)
        findings = run_checks(path, {"HOOKLINE_REDIS_URL": redis_url})
        errors = levels(findings, "error")
        assert len(errors) == 1
        assert errors[0].startswith("secrets missing for source github: GITHUB_WEBHOOK_SECRET")

    def test_missing_env_secret_does_not_hide_the_other_checks(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        """With one source's secret missing, the other sources and Redis are still checked."""
        path = write(tmp_path, GOOD)
        ok = levels(run_checks(path, {"HOOKLINE_REDIS_URL": redis_url}), "ok")
        assert any(m.startswith("source stripe:") for m in ok)
        assert not any(m.startswith("source github:") for m in ok)
        assert any(m.startswith("Redis at") for m in ok)

    def test_missing_secrets_and_other_problems_are_all_reported(self, tmp_path: Path) -> None:
        """Missing secrets of two sources and an invalid key each give their own error."""
        text = GOOD + (
            '\n[sources.acme]\nscheme = "standard-webhooks"\n'
            'secrets = [{ env = "ACME_A" }, { env = "ACME_B" }]\ntolerance = "soon"\n'
        )
        errors = levels(run_checks(write(tmp_path, text), {}), "error")
        assert len(errors) == 3
        assert any("sources.acme.tolerance" in e for e in errors)
        assert any(e.startswith("secrets missing for source github:") for e in errors)
        assert any(
            e.startswith("secrets missing for source acme: ACME_A, ACME_B are not set")
            for e in errors
        )


class TestSources:
    def test_bad_secret_is_an_error_naming_the_source(self, tmp_path: Path, redis_url: str) -> None:
        """A Standard Webhooks secret that is not base64 fails the source's build."""
        text = '[sources.acme]\nscheme = "standard-webhooks"\nsecrets = ["whsec_not base64!"]\n'
        findings = run_checks(write(tmp_path, text), {"HOOKLINE_REDIS_URL": redis_url})
        errors = levels(findings, "error")
        assert len(errors) == 1
        assert errors[0].startswith("source acme: sources.acme.secrets[0]: secret is not valid")
        assert "not base64!" not in render(findings)

    def test_bad_scheme_option_is_an_error(self, tmp_path: Path, redis_url: str) -> None:
        """An hmac source with an unknown encoding is reported with its key."""
        text = (
            '[sources.legacy]\nscheme = "hmac"\nsecrets = ["s"]\n'
            'signature_header = "X-Sig"\nsignature_encoding = "base32"\n'
        )
        errors = levels(
            run_checks(write(tmp_path, text), {"HOOKLINE_REDIS_URL": redis_url}), "error"
        )
        assert len(errors) == 1
        assert "sources.legacy.signature_encoding: expected one of hex, base64" in errors[0]

    def test_no_source_is_a_warning(self, tmp_path: Path, redis_url: str) -> None:
        """A configuration without sources is valid but warned about."""
        findings = run_checks(write(tmp_path, ""), {"HOOKLINE_REDIS_URL": redis_url})
        assert not levels(findings, "error")
        assert any("no sources" in m for m in levels(findings, "warning"))


class TestRedis:
    def test_unset_url_is_an_error(self) -> None:
        """Without redis.url the receiver cannot start: an error naming the variable."""
        errors = levels(check_redis(None), "error")
        assert len(errors) == 1 and "HOOKLINE_REDIS_URL" in errors[0]

    def test_unreachable_redis_is_an_error_without_the_password(self) -> None:
        """A Redis nobody listens on is an error naming the URL with its password masked."""
        port = free_port()
        errors = levels(check_redis(f"redis://app:pa55word@127.0.0.1:{port}/0"), "error")
        assert len(errors) == 1
        assert errors[0].startswith(f"Redis at redis://***@127.0.0.1:{port}/0 is unreachable")
        assert "pa55word" not in errors[0]

    def test_wrong_password_is_an_error_without_the_password(
        self, redis_with: list[EmbeddedRedis]
    ) -> None:
        """Credentials Redis refuses are reported as such, never echoed."""
        url = start(redis_with)
        with redis.Redis.from_url(url) as admin:
            admin.config_set("requirepass", "right-one")
        wrong = url.replace("redis://", "redis://:wrong-one@")
        errors = levels(check_redis(wrong), "error")
        assert len(errors) == 1 and "refused the credentials" in errors[0]
        assert "wrong-one" not in errors[0] and "right-one" not in errors[0]

    def test_invalid_url_is_an_error(self) -> None:
        """A URL Redis clients cannot use is reported, masked."""
        errors = levels(check_redis("http://u:secret@host/0"), "error")
        assert len(errors) == 1
        assert errors[0].startswith("redis.url http://***@host/0 cannot be read")
        assert "secret" not in errors[0]

    def test_sentinel_group_is_checked_through_its_primary(
        self, redis_with: list[EmbeddedRedis], tmp_path: Path
    ) -> None:
        """A ``redis+sentinel://`` URL is followed to the group's primary, which is checked."""
        primary = EmbeddedRedis(extra=("--maxmemory-policy", "allkeys-lru"))
        redis_with.append(primary)
        primary.start()
        sentinel = SentinelServer(tmp_path / "sentinel", "hl", primary.port)
        sentinel.start()
        try:
            findings = check_redis(sentinel.url)
        finally:
            sentinel.stop()
        assert not levels(findings, "error"), findings
        assert levels(findings, "ok")[0].startswith(f"Redis at {sentinel.url} answers")
        # The eviction policy read is the primary's, not the Sentinel's.
        assert levels(findings, "warning")[0].startswith("Redis maxmemory-policy is allkeys-lru")

    def test_unreachable_sentinels_are_an_error_without_the_password(self) -> None:
        """A Sentinel URL whose Sentinels do not answer is unreachable, not an invalid URL."""
        hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
        errors = levels(check_redis(f"redis+sentinel://:pa55word@{hosts}/mymaster"), "error")
        assert len(errors) == 1
        assert errors[0].startswith(
            f"Redis at redis+sentinel://***@{hosts}/mymaster is unreachable"
        ), errors[0]
        assert "No master found for 'mymaster'" in errors[0] and "<redis" not in errors[0]
        assert "pa55word" not in errors[0]

    def test_durable_redis_passes(self, redis_url: str) -> None:
        """noeviction with an append-only file fsynced every second: ok, plus what it risks."""
        findings = check_redis(redis_url)
        assert not levels(findings, "error") and not levels(findings, "warning")
        assert "Redis maxmemory-policy noeviction" in levels(findings, "ok")
        assert "Redis appendonly yes" in levels(findings, "ok")
        assert any("appendfsync everysec" in m for m in levels(findings, "info"))

    def test_evicting_policy_is_a_warning(self, redis_with: list[EmbeddedRedis]) -> None:
        """A maxmemory-policy that deletes keys is warned about, naming the policy."""
        url = start(redis_with, "--maxmemory-policy", "allkeys-lru")
        warnings = levels(check_redis(url), "warning")
        assert len(warnings) == 1
        assert warnings[0].startswith("Redis maxmemory-policy is allkeys-lru")

    def test_no_persistence_is_a_warning(self, redis_with: list[EmbeddedRedis]) -> None:
        """appendonly no and no save points: a restart loses everything, warned about."""
        url = start(redis_with, "--appendonly", "no", "--save", "")
        warnings = levels(check_redis(url), "warning")
        assert len(warnings) == 1
        assert warnings[0].startswith("Redis persistence is off")

    def test_snapshots_only_is_a_warning(self, redis_with: list[EmbeddedRedis]) -> None:
        """RDB snapshots without an append-only file lose what came since the last one."""
        url = start(redis_with, "--appendonly", "no", "--save", "60 1")
        warnings = levels(check_redis(url), "warning")
        assert len(warnings) == 1
        assert warnings[0].startswith("Redis persists only by RDB snapshots (save 60 1)")

    def test_appendfsync_always_is_reported(self, redis_with: list[EmbeddedRedis]) -> None:
        """appendfsync always is said to put every event on disk before the 202."""
        url = start(redis_with, "--appendfsync", "always")
        findings = check_redis(url)
        assert not levels(findings, "warning")
        assert any("appendfsync always" in m for m in levels(findings, "info"))

    def test_appendfsync_no_is_a_warning(self, redis_with: list[EmbeddedRedis]) -> None:
        """appendfsync no leaves flushing to the OS: warned about."""
        url = start(redis_with, "--appendfsync", "no")
        warnings = levels(check_redis(url), "warning")
        assert len(warnings) == 1 and warnings[0].startswith("Redis appendfsync no")

    def test_disabled_config_command_still_checks_what_info_shows(
        self, redis_with: list[EmbeddedRedis]
    ) -> None:
        """Where CONFIG is disabled (managed Redis), policy and AOF still come from INFO."""
        url = start(
            redis_with,
            "--maxmemory-policy",
            "volatile-lru",
            "--appendonly",
            "no",
            "--rename-command",
            "CONFIG",
            "",
        )
        findings = check_redis(url)
        assert not levels(findings, "error")
        warnings = levels(findings, "warning")
        assert len(warnings) == 2
        assert warnings[0].startswith("Redis maxmemory-policy is volatile-lru")
        assert "save points cannot be read" in warnings[1]


class TestMaskUrl:
    @pytest.mark.parametrize(
        ("url", "masked"),
        [
            ("redis://user:pw@host:6379/0", "redis://***@host:6379/0"),
            ("redis://:p%40ss@host/0", "redis://***@host/0"),
            ("rediss://:a@b@host:6380", "rediss://***@host:6380"),
            ("redis://:a#b?c/d@e:f@host:6380/1", "redis://***@host:6380/1"),
            ("unix:///run/redis.sock?db=0&password=pw", "unix:///run/redis.sock?db=0&password=***"),
            ("redis://user@host:6379/0", "redis://***@host:6379/0"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            (
                "redis+sentinel://:pw@h1:26379,h2:26379/mymaster/0",
                "redis+sentinel://***@h1:26379,h2:26379/mymaster/0",
            ),
        ],
    )
    def test_password_is_masked(self, url: str, masked: str) -> None:
        """Everything between the scheme and the last @, and a password in the query string,
        is replaced; the rest is kept."""
        assert mask_url(url) == masked


class TestCommand:
    def test_errors_exit_non_zero(self, tmp_path: Path, redis_url: str) -> None:
        """Any error makes `hookline check` exit 1, with `error:` lines."""
        path = write(tmp_path, GOOD)
        result = CliRunner().invoke(
            main,
            ["check", "--config", path],
            env={"HOOKLINE_REDIS_URL": redis_url, "GITHUB_WEBHOOK_SECRET": None},
        )
        assert result.exit_code == 1
        assert "error: secrets missing for source github" in result.output
        assert "ok: source stripe" in result.output

    def test_warnings_alone_exit_zero(
        self, tmp_path: Path, redis_with: list[EmbeddedRedis]
    ) -> None:
        """Warnings are printed but `hookline check` exits 0."""
        url = start(redis_with, "--maxmemory-policy", "allkeys-lru")
        path = write(tmp_path, GOOD)
        result = CliRunner().invoke(
            main,
            ["check"],
            env={
                "HOOKLINE_CONFIG": path,
                "HOOKLINE_REDIS_URL": url,
                "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
            },
        )
        assert result.exit_code == 0, result.output
        assert "warning: Redis maxmemory-policy is allkeys-lru" in result.output
        assert result.output.rstrip().endswith("0 errors, 1 warning")
        assert all(
            line.split(":", 1)[0] in {"ok", "info", "warning"}
            for line in result.output.splitlines()[:-1]
        )
