"""Run a benchmark by name: ``python -m bench NAME [OPTIONS]`` (``./run bench NAME``).

A benchmark is a module of this package with a ``main(argv) -> int``; adding one is
adding its module and a line to :data:`BENCHMARKS`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from bench import BenchError

#: Benchmark name -> module holding its ``main(argv) -> int``.
BENCHMARKS: dict[str, str] = {
    "receiver": "bench.receiver",
    "durability": "bench.durability",
    "dlq": "bench.dlq",
    "worker": "bench.worker",
    "faults": "bench.faults",
    "load": "bench.load",
    "peers": "bench.peers",
    "providers": "bench.providers",
    "sizing": "bench.sizing",
}

Main = Callable[[Sequence[str]], int]


def _load(name: str) -> tuple[Main, str]:
    """A benchmark's ``main`` and the first line of its module docstring."""
    module = importlib.import_module(BENCHMARKS[name])
    entry: Main = module.main
    summary = (module.__doc__ or "").strip().splitlines()
    return entry, summary[0] if summary else ""


def _usage() -> str:
    lines = ["usage: python -m bench NAME [OPTIONS]  (NAME --help for its options)", ""]
    lines += [f"  {name:<10} {_load(name)[1]}" for name in BENCHMARKS]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the benchmark named by the first argument; return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in BENCHMARKS:
        print(f"bench: no benchmark named {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    entry, _ = _load(name)
    try:
        return entry(rest)
    except BenchError as exc:
        print(f"bench {name}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
