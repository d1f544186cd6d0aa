"""Requests/s of `hookline serve` for asymmetric sources (SendGrid's ECDSA P-256, Standard
Webhooks v1a Ed25519) next to a Stripe (HMAC) source, in the same run.

One configuration with the three sources; each measurement starts a fresh `hookline serve`
on it, warms it up and loads one source with wrk (pre-signed ~1.5 KB events, every id
distinct; see bench/pool.py), with the same private Redis emptied before each. Rounds
alternate the sources (stripe, sendgrid, standard-webhooks v1a), and each ratio to Stripe
is taken within a round, seconds apart; the run reports the median of the per-round
ratios. It also times the signature check alone (the scheme's verify, in this process)
to say what share of the receiver's CPU per request it is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis
from multidict import CIMultiDict

from bench import cpu
from bench.pool import ID_MARK, Pool, pool_size, write_lines, write_pool
from bench.receiver import (
    SETTLE,
    TOLERANCE_S,
    add_load_arguments,
    check_load_arguments,
    progress,
    revision,
    save_results,
    start_redis,
)
from bench.servers import Server
from bench.stored import hookline_events
from bench.wrk import WrkResult, find_wrk, run_wrk
from hookline.config.settings import CONFIG_ENV, DEFAULT_QUEUE, REDIS_URL_ENV
from hookline.ingest.schemes import Key, Scheme, SigningKey, get_scheme
from hookline.redis.embedded import free_port

#: The benchmark's Stripe secret and Standard Webhooks / SendGrid key pairs (throwaways).
STRIPE_SECRET = "whsec_hookline_bench_only"
SOURCES = ("stripe", "sendgrid", "sw-v1a")


@dataclass(frozen=True, slots=True)
class Signer:
    """How one source's pool is signed: its scheme, signing key and verifying key."""

    source: str
    scheme: Scheme
    signing: SigningKey
    verifying: Key
    #: What the configuration lists: ``secrets = [...]`` or ``public_keys = [...]``.
    config_key: str
    config_value: str


def signers() -> dict[str, Signer]:
    """A fresh key for each source."""
    stripe = get_scheme("stripe")
    sendgrid = get_scheme("sendgrid")
    sw = get_scheme("standard-webhooks")
    sg_private, sg_public = sendgrid.generate()
    sw_private, sw_public = sw.generate()
    return {
        "stripe": Signer(
            "stripe",
            stripe,
            stripe.key(STRIPE_SECRET),
            stripe.key(STRIPE_SECRET),
            "secrets",
            STRIPE_SECRET,
        ),
        "sendgrid": Signer(
            "sendgrid",
            sendgrid,
            sendgrid.signing_key(sg_private),
            sendgrid.public_key(sg_public),
            "public_keys",
            sg_public,
        ),
        "sw-v1a": Signer(
            "sw-v1a",
            sw,
            sw.signing_key(sw_private),
            sw.public_key(sw_public),
            "public_keys",
            sw_public,
        ),
    }


def template(source: str, size: int = 1500) -> bytes:
    """A realistic body for ``source``, about ``size`` bytes, with an id placeholder."""
    if source == "sendgrid":  # a batch of delivery events, as SendGrid posts them
        one = {
            "email": "jenny.rosen@example.com",
            "timestamp": int(time.time()),
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": "delivered",
            "category": ["invoice"],
            "sg_event_id": ID_MARK,
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "response": "250 OK",
        }
        events: list[dict[str, Any]] = [one]
        while len(orjson.dumps(events)) < size:
            events.append({**one, "sg_event_id": f"other{len(events)}", "event": "open"})
        return orjson.dumps(events)
    event: dict[str, Any] = {"id": ID_MARK, "type": "invoice.paid", "data": {}}
    event["data"] = {"note": "x" * max(0, size - len(orjson.dumps(event)))}
    return orjson.dumps(event)


def write_signed_pool(
    directory: Path, signer: Signer, *, tag: str, threads: int, per_thread: int
) -> Pool:
    """Pre-sign ``threads * per_thread`` events for ``signer``'s source (see pool.lua)."""
    if signer.source == "stripe":
        return write_pool(directory, tag=tag, threads=threads, per_thread=per_thread)

    def header_line(event_id: str, body: bytes, timestamp: int) -> str:
        headers = signer.scheme.sign(body, signer.signing, timestamp=timestamp, msg_id=event_id)
        return "".join(f"\t{name}: {value}" for name, value in headers.items())

    return write_lines(
        directory,
        template(signer.source),
        header_line,
        tag=tag,
        threads=threads,
        per_thread=per_thread,
    )


def write_config(directory: Path, redis_url: str, port: int, keys: dict[str, Signer]) -> Path:
    """The configuration of every `hookline serve` of the run: the three sources."""
    tables = []
    for name, signer in keys.items():
        scheme = "standard-webhooks" if name == "sw-v1a" else name
        # No worker drains the queue during the benchmark: keep backpressure out of the way.
        tables.append(
            f'[sources.{name}]\nscheme = "{scheme}"\n'
            f'{signer.config_key} = ["{signer.config_value}"]\n'
            f"tolerance = {TOLERANCE_S}\nmax_queue_depth = 1000000000\n"
        )
    path = directory / "hookline.toml"
    path.write_text(
        f'[redis]\nurl = "{redis_url}"\n\n[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
        + "\n".join(tables),
        encoding="utf-8",
    )
    return path


def verify_us(signer: Signer, pool: Pool, count: int = 200) -> float:
    """Microseconds one verification of a pooled request takes, in this process: the best
    of 30 batches (on a shared machine the least disturbed batch is the closest to the
    cost itself)."""
    head = (pool.directory / "head.bin").read_bytes()
    tail = (pool.directory / "tail.bin").read_bytes()
    requests: list[tuple[bytes, CIMultiDict[str]]] = []
    with (pool.directory / "thread-1.txt").open(encoding="ascii") as lines:
        for _, line in zip(range(count), lines, strict=False):
            event_id, rest = line.rstrip("\n").split(" ", 1)
            if rest.startswith("\t"):
                headers: dict[str, str] = dict(pair.split(": ", 1) for pair in rest[1:].split("\t"))
            else:
                headers = {"Stripe-Signature": rest}
            requests.append((head + event_id.encode() + tail, CIMultiDict(headers)))

    def check(body: bytes, headers: CIMultiDict[str]) -> Key:
        return signer.scheme.verify(
            body, headers, [signer.verifying], tolerance=TOLERANCE_S, now=time.time()
        )

    timings = []
    for _ in range(30):
        began = time.perf_counter()
        for request_body, request_headers in requests:
            check(request_body, request_headers)
        timings.append((time.perf_counter() - began) * 1e6 / len(requests))
    return round(min(timings), 1)


@dataclass(frozen=True, slots=True)
class Run:
    """One source measured once."""

    source: str
    wrk: WrkResult
    stored: int
    cpu: cpu.CpuShare | None


def measure(
    source: str,
    config: Path,
    work: Path,
    pools: dict[str, tuple[Pool, Pool]],
    args: argparse.Namespace,
    wrk: str,
    client: redis.Redis,
    redis_pid: int,
    port: int,
) -> Run:
    """Serve the configuration, warm the source up, empty Redis, measure, stop."""
    argv = [
        sys.executable,
        "-m",
        "hookline",
        "serve",
        "--config",
        str(config),
        "--log-level",
        args.log_level,
    ]
    env = {k: v for k, v in os.environ.items() if k not in (CONFIG_ENV, REDIS_URL_ENV)}
    url = f"http://127.0.0.1:{port}/hooks/{source}"
    warm, pool = pools[source]
    client.flushall()
    with Server(argv, port, work / f"{source}.log", env) as server:
        load = {"connections": args.connections, "threads": args.threads}
        if args.warmup:
            run_wrk(wrk, url, warm.directory, duration=args.warmup, **load)
            time.sleep(SETTLE)
        client.flushall()
        meter = cpu.start(server.pid, redis_pid)
        began = time.monotonic()
        result = run_wrk(wrk, url, pool.directory, duration=args.duration, **load)
        share = meter.stop(time.monotonic() - began, result.requests) if meter else None
    stored = hookline_events(client, DEFAULT_QUEUE).events
    progress(
        f"  {source:<9} {result.rps:>9,.0f} req/s  p99 {result.p99_ms:.2f} ms  "
        f"{share.server_us_per_request if share else 0:.0f} us CPU/request"
    )
    return Run(source, result, stored, share)


def report(
    rounds: list[list[Run]], verify: dict[str, float], settings: dict[str, Any]
) -> dict[str, Any]:
    """The run as a JSON-ready document: medians, per-round ratios to Stripe, CPU."""
    by_source: dict[str, list[Run]] = {
        s: [r for rnd in rounds for r in rnd if r.source == s] for s in SOURCES
    }
    results: dict[str, dict[str, Any]] = {}
    for source, runs in by_source.items():
        us = [r.cpu.server_us_per_request for r in runs if r.cpu]
        cpu_us = statistics.median(us) if us else None
        results[source] = {
            "rps": round(statistics.median(r.wrk.rps for r in runs)),
            "p99_ms": round(statistics.median(r.wrk.p99_ms for r in runs), 2),
            "cpu_us_per_request": cpu_us,
            "verify_us": verify[source],
            "verify_share_of_cpu": round(verify[source] / cpu_us, 3) if cpu_us else None,
            "extra_cpu_us_vs_stripe": None,
            "non_2xx": sum(r.wrk.non_2xx for r in runs),
            "consistent": all(
                r.wrk.answered_2xx <= r.stored <= r.wrk.answered_2xx + r.wrk.unanswered
                for r in runs
            ),
        }
    base = results["stripe"]["cpu_us_per_request"]
    for result in results.values():
        if base is not None and result["cpu_us_per_request"] is not None:
            result["extra_cpu_us_vs_stripe"] = round(result["cpu_us_per_request"] - base, 1)
    per_round = {
        f"{s}/stripe": [
            round(
                next(r for r in rnd if r.source == s).wrk.rps
                / next(r for r in rnd if r.source == "stripe").wrk.rps,
                3,
            )
            for rnd in rounds
        ]
        for s in SOURCES[1:]
    }
    ratios = {name: round(statistics.median(values), 3) for name, values in per_round.items()}
    return {
        "benchmark": "providers",
        "settings": settings,
        "results": results,
        "ratios": ratios,
        "ratios_per_round": per_round,
    }


def table(document: dict[str, Any]) -> str:
    """The run for a person."""
    s = document["settings"]
    lines = [
        f"providers benchmark, median of {s['rounds']} rounds: wrk {s['connections']} "
        f"connections, {s['threads']} threads, {s['duration']} s after {s['warmup']} s of "
        f"warm-up; ~{s['body_bytes']}-byte events; revision {s['revision'] or 'unknown'}",
        "",
        f"{'source':<10}{'req/s':>9}{'p99 ms':>9}{'CPU us/req':>12}{'vs stripe':>11}"
        f"{'verify us':>11}{'share':>8}{'non-2xx':>9}  stored ok",
    ]
    for name, r in document["results"].items():
        share = f"{r['verify_share_of_cpu']:.0%}" if r["verify_share_of_cpu"] else "-"
        extra = r["extra_cpu_us_vs_stripe"]
        lines.append(
            f"{name:<10}{r['rps']:>9,}{r['p99_ms']:>9.2f}{r['cpu_us_per_request'] or 0:>12.0f}"
            f"{'-' if extra is None else f'{extra:+.0f}':>11}"
            f"{r['verify_us']:>11.1f}{share:>8}{r['non_2xx']:>9,}  {r['consistent']}"
        )
    lines += [
        "",
        "CPU us/req: the receiver process's CPU per answered request; vs stripe: that less",
        "Stripe's, in the same run; verify us: the scheme's verify alone (best of 30 batches,",
        "in the benchmark's process); share: verify us / CPU us/req.",
    ]
    lines.append("")
    for name, value in document["ratios"].items():
        spread = " ".join(f"{v:.2f}" for v in document["ratios_per_round"][name])
        lines.append(f"{name}: {value:.2f} (per round: {spread})")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Run the benchmark: 0 when every run stored what it acknowledged."""
    parser = argparse.ArgumentParser(
        prog="./run bench providers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_load_arguments(parser, "source")
    parser.add_argument("--log-level", default="info", help="hookline serve's (info)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    check_load_arguments(parser, args)
    wrk = find_wrk()
    keys = signers()
    with (
        tempfile.TemporaryDirectory(prefix="hookline-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        per_thread = pool_size(args.duration, args.max_rate, args.threads)
        warm = pool_size(args.warmup, args.max_rate, args.threads) if args.warmup else 1
        progress(f"signing {per_thread * args.threads * 3:,} events")
        pools = {
            name: (
                write_signed_pool(
                    work / f"{name}-w", signer, tag="w", threads=args.threads, per_thread=warm
                ),
                write_signed_pool(
                    work / f"{name}-m", signer, tag="m", threads=args.threads, per_thread=per_thread
                ),
            )
            for name, signer in keys.items()
        }
        verify = {name: verify_us(keys[name], pools[name][1]) for name in SOURCES}
        server, _ = start_redis(stack, work / "redis", "everysec")
        assert server.process is not None
        client = redis.Redis.from_url(server.url)
        port = free_port()
        config = write_config(work, server.url, port, keys)
        rounds = []
        for n in range(1, args.rounds + 1):
            progress(f"round {n} of {args.rounds}")
            rounds.append(
                [
                    measure(s, config, work, pools, args, wrk, client, server.process.pid, port)
                    for s in SOURCES
                ]
            )
        client.close()
    settings = {
        "revision": revision(),
        "rounds": args.rounds,
        "duration": args.duration,
        "warmup": args.warmup,
        "connections": args.connections,
        "threads": args.threads,
        "body_bytes": pools["stripe"][1].body_size,
        "cpus": os.cpu_count(),
    }
    document = report(rounds, verify, settings)
    print(json.dumps(document, indent=2) if args.json else table(document))
    if not args.no_save:
        save_results(document, "providers")
    return 0 if all(r["consistent"] for r in document["results"].values()) else 1
