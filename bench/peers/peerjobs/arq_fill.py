"""Fill arq's queue from a file of JSON payloads, one a line, with arq's own client.

arq pins redis-py below 6, which hookline's environment is past, so arq runs in an
environment of its own (see :mod:`bench.peers.isolated`): its worker and this filler,
``python -m peerjobs.arq_fill REDIS_URL TASK FILE``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from arq import create_pool
from arq.connections import RedisSettings

from .common import QUEUE

#: Jobs enqueued concurrently (each is a WATCH/MULTI transaction of its own).
CHUNK = 200


async def fill(url: str, task: str, path: Path) -> int:
    """Enqueue one ``task`` job per line of ``path``; returns how many."""
    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=QUEUE)
    count = 0
    try:
        with path.open("rb") as lines:
            chunk = []
            for line in lines:
                chunk.append(json.loads(line))
                if len(chunk) == CHUNK:
                    await asyncio.gather(*(pool.enqueue_job(task, p) for p in chunk))
                    count, chunk = count + len(chunk), []
            await asyncio.gather(*(pool.enqueue_job(task, p) for p in chunk))
            count += len(chunk)
    finally:
        await pool.aclose()
    return count


def main(argv: Sequence[str]) -> int:
    """Fill the queue; print the count."""
    url, task, path = argv
    print(asyncio.run(fill(url, task, Path(path))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
