"""Property, over every registered scheme: whatever is done to a provider's signed request
(headers added, dropped, re-cased or duplicated; the body or the signature altered; odd
encodings; the body sent in random chunks at random pace), over real HTTP to a real
Redis, the receiver answers no 5xx but 503, enqueues nothing that is not validly
signed, and puts no secret in any answer or log line.

The schemes come from the registry (``tests/scheme_cases.CASES`` has a case for every
name in ``SCHEME_NAMES``), so a scheme added there is covered here too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookline.cli.send import SignedRequest, build_request
from hookline.redis import keys
from tests.live import ThreadedReceiver
from tests.scheme_cases import CASES, Case, one_off
from tests.test_providers_receiver import provider_settings

#: Headers HTTP framing owns (the client sets them), never fuzzed.
FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "te"}
#: What the fuzzer may do to a signed request; the first ones keep it valid.
KEEPS_VALID = ("none", "recase", "extra", "encoding")
BREAKS = ("flip-body", "tamper-signature", "drop-header")


@dataclass(repr=False)
class Lines:
    """The receiver's access log lines, kept as JSON text (thread-safe)."""

    lines: list[bytes]
    lock: threading.Lock

    def __call__(self, level: str, fields: dict[str, object]) -> None:
        with self.lock:
            self.lines.append(orjson.dumps({"level": level, **fields}, default=str))


@pytest.fixture(scope="module")
def redis_for_fuzz() -> Iterator[str]:
    """A Redis of the module's own (examples share it; each checks what it added)."""
    from hookline.redis.embedded import EmbeddedRedis

    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="module")
def receiver(redis_for_fuzz: str) -> Iterator[tuple[ThreadedReceiver, Lines]]:
    """One source per registered scheme, in a receiver on a real socket."""
    log = Lines([], threading.Lock())
    live = ThreadedReceiver(provider_settings(redis_for_fuzz), redis_for_fuzz, access_log=log)
    with live:
        yield live, log


def _secrets(case: Case) -> list[str]:
    found = [] if case.asymmetric else list(case.secrets)
    found += [private for private, _ in case.pairs()] if case.asymmetric else []
    # basic-auth's "user:password": the password alone is the secret
    return found + [s.partition(":")[2] for s in found if ":" in s and not s.startswith("-")]


def _signed(live: ThreadedReceiver, case: Case, event_type: str) -> SignedRequest:
    private = case.pairs()[0][0] if case.asymmetric else None
    url = f"http://127.0.0.1:{live.port}/hooks/{case.name}"
    return build_request(
        provider_settings("redis://unused"),
        case.name,
        url=url,
        private_key=private,
        event_type=event_type,
    )


def _send(
    live: ThreadedReceiver,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    chunks: list[int] | None,
    pause: float,
) -> tuple[int, bytes, list[tuple[str, str]]]:
    """POST over a fresh connection; the body whole, or in chunks of the given sizes with
    ``pause`` seconds between them."""
    conn = live.connection(timeout=15)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value.encode("utf-8", "surrogateescape"))
        if chunks is None:
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        else:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            at = 0
            for size in [*chunks, len(body)]:
                piece = body[at : at + size]
                at += len(piece)
                if piece:
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                    time.sleep(pause)
                if at >= len(body):
                    break
            conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        return response.status, response.read(), response.getheaders()
    finally:
        conn.close()


def _mutate(
    request: SignedRequest, case: Case, how: str, data: st.DataObject
) -> tuple[list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in FRAMING]
    body = request.body
    if how == "recase":
        headers = [(k.swapcase(), v) for k, v in headers]
    elif how == "extra":
        junk = st.lists(
            st.tuples(
                st.from_regex(r"\AX-Fuzz-[A-Za-z0-9-]{1,12}\Z"),
                st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
            ),
            max_size=6,
        )
        headers += data.draw(junk, label="junk headers")
    elif how == "encoding":
        encoding = data.draw(st.sampled_from(["gzip", "deflate", "br", "identity", "x-odd"]))
        headers.append(("Content-Encoding", encoding))
    elif how == "flip-body" and body:
        at = data.draw(st.integers(0, len(body) - 1), label="flipped byte")
        body = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]
    elif how == "tamper-signature":
        name = case.scheme.signature_header.lower()
        headers = [(k, one_off(v) if k.lower() == name else v) for k, v in headers]
    elif how == "drop-header" and case.required:
        dropped = data.draw(st.sampled_from(case.required), label="dropped header")
        headers = [(k, v) for k, v in headers if k.lower() != dropped.lower()]
    return headers, body


def _queued(client: redis.Redis) -> int:
    return int(client.llen(keys.rq_queue("providers")))


class TestEveryScheme:
    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        case=st.sampled_from(CASES),
        how=st.sampled_from(KEEPS_VALID + BREAKS),
        event_type=st.from_regex(r"\A[a-z]{1,10}\.[a-z_]{1,10}\Z"),
        chunks=st.none() | st.lists(st.integers(1, 64), min_size=1, max_size=6),
        pause=st.sampled_from([0.0, 0.0, 0.001, 0.02]),
        data=st.data(),
    )
    def test_no_5xx_but_503_no_unsigned_enqueue_no_secret_shown(
        self,
        receiver: tuple[ThreadedReceiver, Lines],
        redis_for_fuzz: str,
        case: Case,
        how: str,
        event_type: str,
        chunks: list[int] | None,
        pause: float,
        data: st.DataObject,
    ) -> None:
        """Any change to a signed request of any scheme gets no 5xx but 503; a request that
        no longer verifies is never enqueued; one left valid is accepted; no answer or
        log line holds a secret of the source."""
        live, log = receiver
        request = _signed(live, case, event_type)
        headers, body = _mutate(request, case, how, data)
        signature = case.scheme.signature_header.lower()
        breaks = {
            "flip-body": body != request.body and case.signs_body and case.any_body,
            # a scheme may carry its signature in the body (Mailgun): no header to tamper
            "tamper-signature": any(k.lower() == signature for k in request.headers),
            "drop-header": bool(case.required),
        }.get(how, False)
        with redis.Redis.from_url(redis_for_fuzz) as client:
            before = _queued(client)
            with log.lock:
                seen = len(log.lines)
            path = "/" + request.url.split("/", 3)[3]  # with the query a scheme may sign
            status, answer, answer_headers = _send(live, path, headers, body, chunks, pause)
            after = _queued(client)
        assert status < 500 or status == 503, (status, answer)
        if breaks:
            assert status >= 400, (how, status, answer)
            assert after == before, f"{how} was enqueued ({status})"
        elif how in KEEPS_VALID:
            assert status in (200, 202, 503), (how, status, answer)
        shown = answer + b"".join(f"{k}: {v}".encode() for k, v in answer_headers)
        with log.lock:
            shown += b"".join(log.lines[seen:])
        for secret in _secrets(case):
            assert secret.encode() not in shown, f"a secret of {case.name} was shown"
