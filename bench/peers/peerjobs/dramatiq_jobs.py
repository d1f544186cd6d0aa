"""Dramatiq's actors: the shared handlers, on a Redis broker with Dramatiq's defaults.

Run with ``dramatiq peerjobs.dramatiq_jobs --processes 1 --threads 8 --queues peerbench``.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from .common import INCR, QUEUE, REDIS_URL_ENV, SLEEP_INCR, incr, sleep_incr

broker = RedisBroker(url=os.environ[REDIS_URL_ENV])
dramatiq.set_broker(broker)
incr_actor = dramatiq.actor(actor_name=INCR, queue_name=QUEUE)(incr)
sleep_incr_actor = dramatiq.actor(actor_name=SLEEP_INCR, queue_name=QUEUE)(sleep_incr)
