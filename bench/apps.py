"""The receivers hookline is compared with, each served by ``python -m bench.serve``.

(a) ``bare``: reads the body and answers 202; the ceiling of an aiohttp receiver.
(b) ``naive``: what a user writes first: verify the Stripe signature, then
``rq.Queue.enqueue`` in a thread with a blocking Redis client, one job per event.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import redis
from aiohttp import web
from rq import Queue

from hookline.errors import VerificationError
from hookline.ingest.schemes import get_scheme

#: The RQ queue the naive receiver enqueues to.
NAIVE_QUEUE = "naive"


async def healthz(request: web.Request) -> web.Response:
    """Liveness, for the benchmark to know the server is up."""
    return web.Response(text="ok")


def create_bare_app() -> web.Application:
    """(a) Read the body, answer 202: no verification, no storage."""

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hooks/{source}", receive)
    app.router.add_get("/healthz", healthz)
    return app


def handle_event(payload: dict[str, Any]) -> None:
    """The job the naive receiver enqueues (the benchmark runs no worker)."""


def create_naive_app(redis_url: str, secret: str, tolerance: float) -> web.Application:
    """(b) Verify the Stripe signature, then enqueue an RQ job from a thread."""
    scheme = get_scheme("stripe")
    keys = [scheme.key(secret)]
    queue = Queue(NAIVE_QUEUE, connection=redis.Redis.from_url(redis_url))

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            scheme.verify(body, request.headers, keys, tolerance=tolerance, now=time.time())
        except VerificationError:
            return web.json_response({"error": "bad signature"}, status=400)
        payload = json.loads(body)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, queue.enqueue, handle_event, payload)
        return web.json_response({"received": True}, status=202)

    app = web.Application()
    app.router.add_post("/hooks/{source}", receive)
    app.router.add_get("/healthz", healthz)
    return app
