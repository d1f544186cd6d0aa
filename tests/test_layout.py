"""The package's layout rules, checked on its source: imports point one way, and no
Redis key prefix is written anywhere but ``hookline/redis/keys.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import hookline

PACKAGE = Path(hookline.__file__).parent
ROOT = PACKAGE.parent

#: Each first-level part of the package and its layer. A module may import its own part,
#: and any part of a lower layer; the kernel's parts (layer 0) form one layer and import
#: each other freely. Parts sharing a higher layer are peers and never import each other
#: (the edge and the processing side meet only in Redis).
LAYERS = {
    # kernel
    "hookline.errors": 0,
    "hookline.envelope": 0,
    "hookline.logs": 0,
    "hookline.config": 0,
    "hookline.redis": 0,
    "hookline.metrics": 0,
    "hookline.listen": 0,
    "hookline.supervise": 0,
    "hookline.terminal": 0,
    # the HTTP edge, and the processing side
    "hookline.ingest": 1,
    "hookline.workers": 1,
    # dead letters: the store, search, operations, files and formatting
    "hookline.dlq": 2,
    # operator surfaces (the CLI starts the console)
    "hookline.console": 3,
    "hookline.cli": 4,
}
#: Imports allowed against the layers: workers write dead letters through the store,
#: which itself stands on the kernel alone (see :data:`KERNEL_ONLY`).
ALLOWED = {("hookline.workers", "hookline.dlq.store")}
#: Modules that may import nothing of hookline but the kernel.
KERNEL_ONLY = {"hookline.dlq.store"}
#: The package root (``hookline/__init__.py``, ``__main__.py``) is the public facade:
#: it may import anything, and nothing inside the package imports names from it.
FACADE = {"hookline", "hookline.__main__"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """Every hookline module ``module`` imports (anywhere in it), with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # `from hookline.redis import keys` imports the module hookline.redis.keys
                name = f"{base}.{alias.name}"
                found.append((node.lineno, name if name in MODULES else base))
    return [(line, name) for line, name in found if name.split(".")[0] == "hookline"]


def _part(module: str) -> str:
    for part in LAYERS:
        if module == part or module.startswith(part + "."):
            return part
    raise AssertionError(f"{module} is in no layer: add its part to LAYERS")


def _violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or ``None`` when it may."""
    if importer in FACADE:
        return None
    if imported in FACADE:
        return "imports the public facade; import from the module that defines the name"
    mine, theirs = _part(importer), _part(imported)
    if importer in KERNEL_ONLY and LAYERS[theirs] > 0:
        return "may import the kernel only"
    if mine == theirs or (mine, imported) in ALLOWED:
        return None
    if LAYERS[theirs] < LAYERS[mine] or LAYERS[mine] == LAYERS[theirs] == 0:
        return None
    if LAYERS[theirs] == LAYERS[mine]:
        return f"imports its peer {theirs}"
    return f"imports {theirs}, a higher layer"


def _violations(imports: dict[str, list[tuple[int, str]]]) -> list[tuple[str, int, str, str]]:
    """(module, line, module imported, why) for each import that breaks the layers."""
    return [
        (module, line, imported, why)
        for module, found in sorted(imports.items())
        for line, imported in found
        if (why := _violation(module, imported))
    ]


class TestImportLayers:
    def test_no_module_imports_a_higher_layer(self) -> None:
        """Surfaces import dead letters, processing, the edge and the kernel; nothing
        imports upwards, across to a peer, or from the package's facade."""
        imports = {module: _imports(module, path) for module, path in MODULES.items()}
        found = _violations(imports)
        assert [f"{MODULES[m].relative_to(ROOT)}:{n}: {i}: {why}" for m, n, i, why in found] == []

    def test_every_module_is_in_a_layer(self) -> None:
        """A new first-level module or package must be given its layer."""
        for module in MODULES:
            if module not in FACADE:
                _part(module)

    def test_the_check_catches_each_kind_of_violation(self) -> None:
        """Upward, peer and facade imports are reported; the allowed ones are not."""
        imports = {
            "hookline.redis.commit": [(1, "hookline.ingest.app"), (2, "hookline.errors")],
            "hookline.ingest.app": [(3, "hookline.workers.handlers"), (4, "hookline.metrics")],
            "hookline.dlq.ops": [(5, "hookline")],
            "hookline.dlq.store": [(6, "hookline.workers.runner")],
            "hookline.workers.runner": [(7, "hookline.dlq.store"), (8, "hookline.dlq.ops")],
            "hookline.cli.main": [(9, "hookline.console.command"), (10, "hookline.dlq.ops")],
            "hookline.console.app": [(11, "hookline.cli.main")],
            "hookline": [(12, "hookline.workers.handlers")],
        }
        assert sorted(line for _, line, _, _ in _violations(imports)) == [1, 3, 5, 6, 8, 11]

    def test_relative_and_submodule_imports_are_resolved(self, tmp_path: Path) -> None:
        """`from . import x` and `from hookline.redis import keys` name the module imported."""
        path = tmp_path / "ops.py"
        path.write_text(
            "from . import store\nfrom ..redis import keys\nfrom hookline import on\n"
            "import hookline.errors\n"
        )
        assert _imports("hookline.dlq.ops", path) == [
            (1, "hookline.dlq.store"),
            (2, "hookline.redis.keys"),
            (3, "hookline"),
            (4, "hookline.errors"),
        ]


#: A key prefix written out: RQ's (``rq:job:`` ...) or hookline's own (``hookline:x``),
#: or a key built from keys.py's prefix constant elsewhere.
PREFIX = re.compile(r"\brq:[a-z*]|\bhookline:[^\s'\"]|PREFIX\s*\}|PREFIX\s*\+|\.\.\s*PREFIX")
#: The one module allowed to spell prefixes.
KEYS_MODULE = PACKAGE / "redis" / "keys.py"
#: Files that still spell prefixes, each with the reason; an entry that no longer applies
#: fails the test, so it is removed when its file is mended.
KNOWN = {
    # issue 10 rewrites these (the worker's scripts move into .lua files)
    PACKAGE / "workers" / "worker.py": "issue 10",
}


def _prefixed_lines(path: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PREFIX.search(line)
    ]


class TestKeyPrefixes:
    def test_no_prefix_is_written_outside_the_keys_module(self) -> None:
        """No Python module but keys.py and no Lua script spells a Redis key prefix:
        Lua gets its keys, or the prefixes, through KEYS and ARGV."""
        files = [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.lua")]
        assert any(f.suffix == ".lua" for f in files)
        found = {f: _prefixed_lines(f) for f in files if f != KEYS_MODULE}
        assert [line for f, lines in found.items() if f not in KNOWN for line in lines] == []
        assert [f for f in KNOWN if not found.get(f)] == [], "remove mended files from KNOWN"

    def test_the_pattern_finds_prefixes_and_not_prose(self) -> None:
        """Keys in Lua or Python strings are caught; a job description is not."""
        caught = [
            "redis.call('HGET', 'rq:job:' .. id, 'data')",
            "redis.call('SADD', 'rq:queues', qkey)",
            "redis.call('INCR', 'hookline:dlq:replays')",
            'f"{keys.PREFIX}:marks:{source}"',
        ]
        missed = [
            "'hookline: replay of dead letter ' .. id",
            'f"hookline: {len(items)} event(s)"',
            'f"rq:{job.worker_name}"',
        ]
        assert [bool(PREFIX.search(line)) for line in caught + missed] == [True] * 4 + [False] * 3


def _exception_classes(path: Path) -> list[ast.ClassDef]:
    """The classes in ``path`` that derive, directly, from an exception class."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
            if any(b.endswith(("Error", "Exception", "Timeout")) for b in bases):
                found.append(node)
    return found


class TestErrors:
    def test_every_exception_is_defined_in_the_errors_module(self) -> None:
        """No module but hookline/errors.py defines an exception class."""
        errors = PACKAGE / "errors.py"
        elsewhere = [
            f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}"
            for path in MODULES.values()
            if path != errors
            for node in _exception_classes(path)
        ]
        assert elsewhere == []

    def test_the_check_finds_exception_classes(self, tmp_path: Path) -> None:
        """A class deriving from an exception is found; another class is not."""
        path = tmp_path / "m.py"
        path.write_text(
            "class A(Exception): pass\nclass B(errors.HooklineError): pass\nclass C: pass\n"
        )
        assert [node.name for node in _exception_classes(path)] == ["A", "B"]

    def test_every_error_says_when_it_is_raised(self) -> None:
        """Each class of the hierarchy derives from HooklineError and has a one-line
        "Raised when/by/inside ..." docstring."""
        from hookline import errors

        classes = [
            value
            for value in vars(errors).values()
            if isinstance(value, type) and issubclass(value, BaseException)
        ]
        assert len(classes) > 10
        for cls in classes:
            if cls is errors.HooklineError:
                continue
            assert issubclass(cls, errors.HooklineError), cls.__name__
            doc = cls.__doc__ or ""
            assert doc.startswith("Raised ") and "\n" not in doc, cls.__name__
