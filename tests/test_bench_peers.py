"""The peer benchmark's harness works, on the systems that need no ``bench`` extra.

No figure is checked here (speed claims live in ``./run bench peers``): only that a
tiny run of hookline and of stock RQ goes through the harness's setup, its filling of
each queue, its worker commands and its counting, and that the report can be built.
"""

from __future__ import annotations

from pathlib import Path

from bench.peers.report import Results, table
from bench.peers.run import measure_rounds, open_bench, pairs, parse_options, settings
from hookline.config.settings import load_settings
from hookline.redis.embedded import EmbeddedRedis


class TestPeerHarness:
    def test_tiny_run_of_hookline_and_stock_rq_counts_every_job_once(
        self, private_redis: EmbeddedRedis, tmp_path: Path
    ) -> None:
        """Twenty jobs each for hookline and RQ's SimpleWorker are all counted, once, and
        the report shows both systems and the (a) target."""
        argv = ["--events", "20", "--rounds", "1", "--kinds", "a", "--no-lag", "--no-save"]
        opts = parse_options([*argv, "--systems", "hookline,rq SimpleWorker"], "")
        bench = open_bench(opts, tmp_path, private_redis)
        try:
            todo = pairs(opts)
            (runs,) = measure_rounds(bench, opts, todo)
        finally:
            bench.client.close()
        assert [(r.system, r.kind, r.events) for r in runs] == [
            ("hookline", "a", 20),
            ("rq SimpleWorker", "a", 20),
        ]
        assert all(r.busy > 0 and r.rss_bytes > 0 and r.processes >= 1 for r in runs)
        systems = tuple(s for s, _ in todo)
        report = table(
            Results(
                settings(opts, bench.concurrency), systems, (tuple(runs),), (), None, "--no-lag"
            )
        )
        assert "rq SimpleWorker" in report
        assert "(a) hookline >= 2x the best peer (rq SimpleWorker)" in report

    def test_hookline_configuration_loads_with_or_without_concurrency(
        self, private_redis: EmbeddedRedis, tmp_path: Path
    ) -> None:
        """The configuration written for hookline is valid whether or not this hookline
        has ``workers.concurrency``, and names the benchmark's handler module."""
        opts = parse_options(["--events", "20", "--no-save"], "")
        bench = open_bench(opts, tmp_path, private_redis)
        bench.client.close()
        for kind, path in bench.ctx.hookline_configs.items():
            loaded = load_settings(path, env={})
            assert loaded.workers.handlers == ("peerjobs.hookline_jobs",)
            wanted = bench.concurrency[kind]
            if wanted is not None:
                assert getattr(loaded.workers, "concurrency", wanted) == wanted
