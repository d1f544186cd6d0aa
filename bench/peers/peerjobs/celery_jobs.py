"""Celery's tasks: the shared handlers, on a Redis broker, acknowledged after they run.

Run with ``celery -A peerjobs.celery_jobs worker --pool threads --concurrency 8 -Q peerbench``.
``task_acks_late`` gives Celery the guarantee the other systems have by default (a
message is acknowledged once its handler has returned, so a crash runs it again);
everything else is Celery's default: prefetch multiplier 4, JSON, no result backend.
"""

from __future__ import annotations

import os

from celery import Celery

from .common import INCR, QUEUE, REDIS_URL_ENV, SLEEP_INCR, incr, sleep_incr

app = Celery("peerbench", broker=os.environ[REDIS_URL_ENV])
app.conf.update(task_acks_late=True, task_default_queue=QUEUE, task_ignore_result=True)
incr_task = app.task(name=INCR)(incr)
sleep_incr_task = app.task(name=SLEEP_INCR)(sleep_incr)
