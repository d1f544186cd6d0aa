"""Serve one of :mod:`bench.apps`: ``python -m bench.serve {bare,naive} --port N [...]``.

A launcher of its own so that the naive receiver's job function is importable by its
module name (``bench.apps.handle_event``), as a user's would be, not as ``__main__``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from aiohttp import web

from bench.apps import create_bare_app, create_naive_app


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    parser.add_argument("app", choices=("bare", "naive"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", help="naive: where to enqueue")
    parser.add_argument("--secret", help="naive: the Stripe signing secret")
    parser.add_argument("--tolerance", type=float, default=300.0, help="naive: seconds")
    args = parser.parse_args(argv)
    if args.app == "bare":
        app = create_bare_app()
    elif args.redis_url and args.secret:
        app = create_naive_app(args.redis_url, args.secret, args.tolerance)
    else:
        parser.error("naive needs --redis-url and --secret")
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
