"""Property: whatever unsigned or wrongly signed request arrives, over real HTTP, the receiver
answers with a 4xx it promises and writes nothing to Redis."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import time
import zlib
from collections.abc import Iterator
from urllib.parse import quote

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import GITHUB_SECRET, SOURCES, make_settings
from tests.helpers import queued_envelopes, signed, stripe_event
from tests.live import ThreadedReceiver

#: Body limit of every source here: small, so that bodies around it stay cheap to send.
LIMIT = 16 * 1024
#: Every status a request without a valid signature may get.
ALLOWED = {400, 401, 404, 413}

#: The headers each scheme reads, as providers spell them.
SCHEME_HEADERS = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "Stripe-Signature",
    "X-Hub-Signature-256",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-Shopify-Hmac-Sha256",
    "X-Shopify-Topic",
    "X-Shopify-Event-Id",
    "X-Shopify-Webhook-Id",
    "X-Slack-Signature",
    "X-Slack-Request-Timestamp",
    "X-Signature",
    "Content-Type",
)
#: Headers that change HTTP framing (the client sets them) or the body's decoding (the test does).
FRAMING = {
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "expect",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
}

#: Bytes allowed in a header value (RFC 9110 field-vchar, SP, HTAB and obs-text).
FIELD_BYTES = [9, *range(0x20, 0x7F), *range(0x80, 0x100)]

timestamps = st.one_of(
    # near now, inside and around the tolerance, so verification reaches the signatures
    st.integers(-400, 400).map(lambda skew: str(int(time.time()) + skew)),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["", " ", "0", "-1", "1e9", "١٢٣", "+1700000000", "17000000000000000000"]),
)
hex_sigs = st.binary(min_size=0, max_size=40).map(bytes.hex)
b64_sigs = st.binary(min_size=0, max_size=40).map(lambda b: base64.b64encode(b).decode())
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
    timestamps,
    hex_sigs,
    b64_sigs,
    st.builds(lambda t, s: f"t={t},v1={s}", timestamps, hex_sigs),
    st.builds(lambda t, a, b: f"t={t},v0={a},v1={b},v1=zz", timestamps, hex_sigs, hex_sigs),
    st.lists(b64_sigs.map(lambda s: f"v1,{s}"), max_size=3).map(" ".join),
    st.builds(lambda s: f"v2,{s} v1,{s}", b64_sigs),
    hex_sigs.map(lambda s: f"v0={s}"),
    hex_sigs.map(lambda s: f"sha256={s}"),
    st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"]),
    # raw field-value bytes, obs-text included: aiohttp decodes them with surrogateescape
    st.lists(st.sampled_from(FIELD_BYTES), max_size=40).map(bytes),
)
token = st.from_regex(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}\Z")
header_names = st.one_of(st.sampled_from(SCHEME_HEADERS), token).filter(
    lambda name: name.lower() not in FRAMING
)
headers_strategy = st.dictionaries(header_names, header_values, max_size=8)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=2048),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda i, t: orjson.dumps({"id": i, "type": t, "event_id": i, "event": {"type": t}}),
        st.text(max_size=20),
        st.text(max_size=20),
    ),
    # around the limit: just under, at, just over
    st.integers(LIMIT - 2, LIMIT + 2).map(lambda n: stripe_event(size=n)[:n].ljust(n, b" ")),
    st.integers(LIMIT + 1, 4 * LIMIT).map(lambda n: b"\x00" * n),
)
source_names = st.one_of(
    st.sampled_from(sorted(SOURCES)),
    st.sampled_from(["nope", "Stripe", "stripe.", "sw-", "..", "%00"]),
    st.text(min_size=1, max_size=12),
)


@pytest.fixture
def receiver(redis_url: str) -> Iterator[ThreadedReceiver]:
    """The receiver with every test source (bodies limited to LIMIT) in a background thread."""
    sources = {name: {**spec, "max_body": LIMIT} for name, spec in SOURCES.items()}
    with ThreadedReceiver(make_settings(sources=sources), redis_url) as live:
        yield live


def post(
    live: ThreadedReceiver,
    source: str,
    headers: dict[str, str | bytes],
    body: bytes,
    chunked: bool,
) -> int | None:
    """POST ``body`` with ``headers`` over a new connection; return the status.

    ``None`` means the receiver closed the connection before the request was sent whole
    and no answer could be read: what it may do to a body over the limit.
    """
    wire = {name: v.encode() if isinstance(v, str) else v for name, v in headers.items()}
    conn = live.connection()
    try:
        path = "/hooks/" + quote(source, safe="")
        try:
            if chunked:
                chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
                conn.request("POST", path, body=iter(chunks), headers=wire, encode_chunked=True)
            else:
                conn.request("POST", path, body=body, headers=wire)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered early; the answer may still be readable
        try:
            response = conn.getresponse()
            response.read()
        except (ConnectionResetError, http.client.RemoteDisconnected):
            return None
        return response.status
    finally:
        conn.close()


class TestUnsignedTraffic:
    @settings(
        max_examples=1000,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        source=source_names,
        headers=headers_strategy,
        body=bodies,
        chunked=st.booleans(),
        # The receiver never decompresses: a Content-Encoding is just another header.
        encoding=st.sampled_from([None, None, "identity", "gzip", "deflate", "br", "x-unknown"]),
    )
    def test_random_requests_get_only_promised_4xx_and_enqueue_nothing(
        self,
        receiver: ThreadedReceiver,
        r: redis.Redis,
        source: str,
        headers: dict[str, str | bytes],
        body: bytes,
        chunked: bool,
        encoding: str | None,
    ) -> None:
        """Random headers and bodies never get a 5xx or 2xx, and never write to Redis."""
        if encoding is not None:
            headers = {**headers, "Content-Encoding": encoding}
        status = post(receiver, source, headers, body, chunked)
        if status is None:
            assert len(body) > LIMIT, "connection dropped on a body within the limit"
        else:
            assert status in ALLOWED, (status, source, headers, len(body))
        if status == 404:
            assert source not in SOURCES
        if status == 413:
            assert len(body) > LIMIT
        if source in SOURCES and len(body) <= LIMIT:
            assert status in (400, 401)
        assert r.dbsize() == 0

    def test_receiver_still_healthy_after_garbage(
        self, receiver: ThreadedReceiver, r: redis.Redis
    ) -> None:
        """After malformed requests, the same receiver still answers and accepts nothing stray."""
        for source in SOURCES:
            assert post(receiver, source, {"Stripe-Signature": "t=,v1="}, b"\xff", False) == 401
        conn = receiver.connection()
        try:
            conn.request("GET", "/readyz")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
        assert r.dbsize() == 0


class TestEncodedBodies:
    @pytest.mark.parametrize("encoding", ["gzip", "deflate"])
    @pytest.mark.parametrize("chunked", [False, True])
    def test_encoded_body_is_verified_and_kept_as_sent(
        self, receiver: ThreadedReceiver, r: redis.Redis, encoding: str, chunked: bool
    ) -> None:
        """Content-Encoding is not undone: the signature covers, and Redis keeps, wire bytes."""
        raw = b'{"action": "opened"}'
        wire = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
        headers: dict[str, str | bytes] = {
            "Content-Encoding": encoding,
            "X-GitHub-Event": "issues",
            **signed("github", GITHUB_SECRET, wire, msg_id=f"d-{encoding}-{chunked}"),
        }
        assert post(receiver, "github", headers, wire, chunked) == 202
        [stored] = queued_envelopes(r)
        assert stored.body == wire
        garbage = {**headers, "X-GitHub-Delivery": "d-garbage"}
        assert post(receiver, "github", garbage, b"not compressed at all", chunked) == 401
        assert len(queued_envelopes(r)) == 1
