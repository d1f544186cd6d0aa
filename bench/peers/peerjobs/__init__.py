"""What the peer benchmark's worker processes import: one small module per system.

The workers import this directory as the top-level package ``peerjobs`` (the benchmark
puts ``bench/peers`` on their ``PYTHONPATH``), so that a Dramatiq, Celery, arq or RQ
worker loads its own library and :mod:`peerjobs.common`, not the benchmark or hookline.
Every module here imports only the standard library, redis-py and its own system.
"""
