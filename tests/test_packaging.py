"""The wheel as a user installs it: one top-level name, its data inside, and a project with
packages named ``config``, ``workers`` and ``ingest`` of its own working beside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import redis

from hookline.redis.connection import as_str
from tests.worker_support import ROOT, enqueue, envelope

#: What a source checkout holds that the wheel is built from (as the Dockerfile copies it).
BUILD_INPUTS = ("pyproject.toml", "README.md", "hookline")
#: Installs a wheel file alone, from nowhere but the file.
PIP_INSTALL = (sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet")
#: Left out of the copy: what Python and tools write next to the sources.
_JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a clean copy of the sources (pip wheel, no dependencies).

    A copy, because setuptools builds in the source tree and keeps ``build/`` there: a
    stale ``build/lib`` would put modules deleted since into the wheel.
    """
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=_JUNK)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    (built,) = out.glob("hookline-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed alone into a directory of its own (its dependencies are the test
    environment's); the directory, for PYTHONPATH, with its scripts under ``bin/``."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [*PIP_INSTALL, "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return target


class TestWheel:
    def test_only_top_level_name_is_hookline(self, wheel: Path) -> None:
        """Nothing but ``hookline`` (and its metadata) lands at the top of site-packages."""
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
        tops = {name.split("/", 1)[0] for name in names}
        assert {t for t in tops if not t.endswith(".dist-info")} == {"hookline"}
        top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        for listed in top_level:
            with zipfile.ZipFile(wheel) as zf:
                assert zf.read(listed).decode().split() == ["hookline"]

    def test_every_source_file_and_the_package_data_are_inside(self, wheel: Path) -> None:
        """Every file of the package (modules, py.typed, templates, static, TOML, Lua) is in
        the wheel, so an installed hookline finds what a checkout does."""
        with zipfile.ZipFile(wheel) as zf:
            inside = set(zf.namelist())
        package = ROOT / "hookline"
        files = {
            path.relative_to(ROOT).as_posix()
            for path in package.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        }
        assert files - inside == set()
        kinds = {Path(name).suffix for name in files}
        assert {".py", ".typed", ".html", ".css", ".toml"} <= kinds
        assert "hookline/py.typed" in inside and "hookline/config/dev.toml" in inside


#: A project's own packages, named like hookline's parts used to be.
PROJECT = {
    "config/__init__.py": "",
    "config/settings.py": 'DB_URL = "postgresql://shop@db/shop"\n',
    "workers/__init__.py": (
        "import os\n\nimport redis\n\n\n"
        "def record(event_id: str, what: str) -> None:\n"
        '    client = redis.Redis.from_url(os.environ["PROJECT_REDIS_URL"])\n'
        '    client.hset("project:handled", event_id, what)\n'
        "    client.close()\n"
    ),
    "ingest/__init__.py": "def normalise(event_type: str) -> str:\n    return event_type.upper()\n",
    "shopapp/__init__.py": "",
    "shopapp/handlers.py": (
        "from config.settings import DB_URL\n"
        "from ingest import normalise\n"
        "from workers import record\n\n"
        "from hookline import Event, on\n\n\n"
        '@on("shop")\n'
        "def handle(event: Event) -> None:\n"
        '    record(event.id, f"{normalise(event.type)} {DB_URL}")\n'
    ),
}


def project(directory: Path, redis_url: str) -> Path:
    """Lay out the project and its ``hookline.toml``."""
    for name, text in PROJECT.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    config = directory / "hookline.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\n'
        '[sources.shop]\nscheme = "hmac"\nsecrets = ["s"]\nsignature_header = "X-Sig"\n'
        '[workers]\nhandlers = ["shopapp.handlers"]\n'
    )
    return config


class TestProjectWithItsOwnConfigWorkersAndIngest:
    def test_check_passes_and_work_handles_the_events(
        self, installed: Path, tmp_path: Path, redis_url: str, r: redis.Redis
    ) -> None:
        """From a project with its own ``config``, ``workers`` and ``ingest`` packages, the
        installed wheel's `hookline check` passes and `hookline work --burst` runs its
        handler, which imports all three."""
        project(tmp_path, redis_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKLINE_", "PYTHONPATH"))}
        env |= {"PYTHONPATH": str(installed), "PROJECT_REDIS_URL": redis_url}
        hookline = str(installed / "bin" / "hookline")

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [hookline, *args],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        where = subprocess.run(
            [sys.executable, "-c", "import hookline; print(hookline.__file__)"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert where.stdout.strip() == str(installed / "hookline" / "__init__.py")

        check = run("check", "--config", "hookline.toml")
        assert check.returncode == 0, check.stdout + check.stderr
        assert "ok: handlers shopapp.handlers: 1 route: shop/*" in check.stdout

        enqueue(
            r, *(envelope(f"evt_{n}", source="shop", event_type="order.paid") for n in range(3))
        )
        work = run("work", "--config", "hookline.toml", "--burst")
        assert work.returncode == 0, work.stderr
        handled = {as_str(k): as_str(v) for k, v in r.hgetall("project:handled").items()}
        assert handled == {f"evt_{n}": "ORDER.PAID postgresql://shop@db/shop" for n in range(3)}
