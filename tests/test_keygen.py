"""``hookline keygen`` and ``hookline send --private-key`` against a real ``hookline serve``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from hookline.cli.main import main
from hookline.ingest.schemes import get_scheme
from hookline.redis.embedded import EmbeddedRedis, free_port
from tests.helpers import queued_envelopes
from tests.live import ServeProcess

ASYMMETRIC = ("sendgrid", "discord", "standard-webhooks")


def hookline(*args: str) -> Result:
    """Run ``hookline ARGS`` in-process, with hookline's variables cleared."""
    env: dict[str, str | None] = {
        "HOOKLINE_CONFIG": None,
        "HOOKLINE_REDIS_URL": None,
        "HOOKLINE_PRIVATE_KEY": None,
    }
    return CliRunner().invoke(main, list(args), env=env)


def keygen(scheme: str) -> tuple[str, str]:
    """The private and public keys ``hookline keygen SCHEME`` prints."""
    result = hookline("keygen", scheme)
    assert result.exit_code == 0, result.output
    private_line, public_line = result.stdout.splitlines()
    assert private_line.startswith("private key") and public_line.startswith("public key")
    return private_line.split()[-1], public_line.split()[-1]


#: One key pair per asymmetric scheme, made by the command under test.
PAIRS = {scheme: keygen(scheme) for scheme in ASYMMETRIC}


@pytest.fixture(scope="module")
def config(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A configuration whose sources take the generated public keys, and a Twilio one."""
    port = free_port()
    tables = "".join(
        f'[sources.{scheme}]\nscheme = "{scheme}"\npublic_keys = ["{PAIRS[scheme][1]}"]\n\n'
        for scheme in ASYMMETRIC
    )
    tables += (
        '[sources.twilio]\nscheme = "twilio"\nsecrets = ["auth-token"]\n'
        'public_url = "https://hooks.example.com/hooks/twilio"\n'
    )
    path = tmp_path_factory.mktemp("keygen") / "hookline.toml"
    path.write_text(f'[redis]\nurl = "{redis_server.url}"\n[server]\nport = {port}\n{tables}')
    return path


@pytest.fixture(scope="module")
def receiver(config: Path) -> Iterator[ServeProcess]:
    """``hookline serve`` on that configuration, for the whole module."""
    port = int(config.read_text().split("port = ")[1].split()[0])
    with ServeProcess(config, port=port) as process:
        yield process


class TestKeygen:
    """``hookline keygen SCHEME``."""

    @pytest.mark.parametrize("scheme", ASYMMETRIC)
    def test_prints_a_fresh_pair_the_scheme_reads(self, scheme: str) -> None:
        """Both keys parse as the scheme's private and public key, and a second run
        prints another pair."""
        private, public = keygen(scheme)
        impl = get_scheme(scheme)
        impl.signing_key(private)
        impl.public_key(public)
        assert (private, public) != keygen(scheme)

    def test_shared_secret_scheme_is_a_one_line_error(self) -> None:
        """A scheme keyed by a shared secret has no pair to make: exit 1, no traceback."""
        result = hookline("keygen", "github")
        assert result.exit_code == 1
        assert "shared secret" in result.output and "Traceback" not in result.output

    def test_unknown_scheme_is_a_usage_error(self) -> None:
        """An unknown scheme name is refused with the list of names."""
        result = hookline("keygen", "paypal")
        assert result.exit_code == 2 and "sendgrid" in result.output


class TestSendWithPrivateKey:
    """``hookline send --private-key`` signs as a provider holding that key."""

    @pytest.mark.parametrize("scheme", ASYMMETRIC)
    def test_signed_event_is_accepted(
        self, scheme: str, receiver: ServeProcess, config: Path, r: redis.Redis
    ) -> None:
        """An event signed with the generated private key is answered 202 and stored."""
        result = hookline(
            "send", scheme, "--config", str(config), "--private-key", PAIRS[scheme][0]
        )
        assert result.exit_code == 0, result.output
        assert "-> 202" in result.output
        assert [e.source for e in queued_envelopes(r)] == [scheme]

    def test_other_pairs_private_key_is_refused(
        self, receiver: ServeProcess, config: Path, r: redis.Redis
    ) -> None:
        """A private key from another pair gets a 401, and send exits non-zero."""
        other, _ = keygen("sendgrid")
        result = hookline("send", "sendgrid", "--config", str(config), "--private-key", other)
        assert result.exit_code == 1 and "-> 401" in result.output
        assert queued_envelopes(r) == []

    def test_without_a_private_key_says_how_to_get_one(self, config: Path) -> None:
        """A source with public keys only needs --private-key; the message names keygen."""
        result = hookline("send", "discord", "--config", str(config))
        assert result.exit_code == 1
        assert "--private-key" in result.output and "hookline keygen discord" in result.output

    @pytest.mark.parametrize("key", ["not a key", "AAAA", PAIRS["discord"][0]])
    def test_unusable_private_key_is_a_one_line_error(self, config: Path, key: str) -> None:
        """A private key that is not the scheme's kind is refused before anything is sent."""
        result = hookline("send", "sendgrid", "--config", str(config), "--private-key", key)
        assert result.exit_code == 1
        assert "private key" in result.output and "Traceback" not in result.output
        assert key not in result.output

    def test_twilio_signs_its_public_url(
        self, receiver: ServeProcess, config: Path, r: redis.Redis
    ) -> None:
        """For a scheme that signs its URL, send signs public_url and posts to the receiver."""
        result = hookline("send", "twilio", "--config", str(config), "--type", "delivered")
        assert result.exit_code == 0, result.output
        [envelope] = queued_envelopes(r)
        assert (envelope.source, envelope.type) == ("twilio", "delivered")
