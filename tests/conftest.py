"""Fixtures: a real redis-server per session (flushed per test), private servers on demand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from hookline.config.settings import Settings, parse_settings
from hookline.ingest.app import create_app
from hookline.redis.embedded import EmbeddedRedis
from tests.cluster import RedisCluster

STRIPE_SECRET = "whsec_test_secret"
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GITHUB_SECRET = "It's a Secret to Everybody"
SHOPIFY_SECRET = "hush"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

#: Sources used by most tests, one per scheme.
SOURCES: dict[str, dict[str, Any]] = {
    "stripe": {"scheme": "stripe", "secrets": [STRIPE_SECRET]},
    "sw": {"scheme": "standard-webhooks", "secrets": [SW_SECRET]},
    "svix": {"scheme": "svix", "secrets": [SW_SECRET]},
    "github": {"scheme": "github", "secrets": [GITHUB_SECRET]},
    "shopify": {"scheme": "shopify", "secrets": [SHOPIFY_SECRET]},
    "slack": {"scheme": "slack", "secrets": [SLACK_SECRET]},
    "generic": {
        "scheme": "hmac",
        "secrets": ["generic-secret"],
        "signature_header": "X-Signature",
        "signature_prefix": "sha256=",
        "signature_encoding": "base64",
        "queue": "generic",
    },
}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """One real redis-server for the session, on a free port in a temporary directory."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """The shared server's URL, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One real Redis Cluster for the session (3 primaries, 3 replicas), started on first use."""
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def cluster(redis_cluster: RedisCluster) -> RedisCluster:
    """The session's Redis Cluster, emptied and with every slot served before each test."""
    redis_cluster.wait_until_ok()
    redis_cluster.flush()
    return redis_cluster


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    """A redis-server of the test's own, which the test may kill or restart."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A blocking client on the shared server, for assertions."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def make_settings(redis_url: str | None = None, **overrides: Any) -> Settings:
    """Settings with the standard test sources, plus overrides of top-level tables."""
    data: dict[str, Any] = {"sources": {k: dict(v) for k, v in SOURCES.items()}}
    for key, value in overrides.items():
        data[key] = value
    if redis_url:
        data["redis"] = {"url": redis_url}
    return parse_settings(data, {})


ClientFactory = Callable[..., Any]


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[..., Any]]:
    """Build a test client for a receiver with given settings and Redis URL (and options
    of ``create_app``, such as ``access_log``)."""
    clients: list[TestClient[Any, Any]] = []

    async def factory(settings: Settings, url: str, **options: Any) -> TestClient[Any, Any]:
        client = TestClient(TestServer(create_app(settings, url, **options)))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def client(redis_url: str, client_for: Callable[..., Any]) -> TestClient[Any, Any]:
    """A receiver with the standard test sources on the shared server."""
    result: TestClient[Any, Any] = await client_for(make_settings(), redis_url)
    return result
