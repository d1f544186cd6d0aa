"""The Dockerfile and docker-compose.yml, checked without a Docker engine.

Each compose service that runs hookline is resolved by click itself, so a command or
option that does not exist fails here rather than in a crash-looping container.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any, cast

import click
import pytest
import yaml

from hookline.cli.check import check_config, check_sources
from hookline.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = ("receiver", "worker")


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, args = (current + stripped).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    return instructions


def exec_form(args: str) -> list[str]:
    """The argv of an exec-form (JSON array) ENTRYPOINT or CMD."""
    assert args.startswith("["), f"use the exec form (a JSON array), got {args!r}"
    return cast(list[str], json.loads(args))


def last(keyword: str) -> str:
    """The arguments of the last ``keyword`` instruction: the one that takes effect."""
    found = [args for kw, args in dockerfile() if kw == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def argv(service: dict[str, Any]) -> list[str]:
    """What the service's container runs: entrypoint then command, as Docker combines them.

    A service built from the Dockerfile inherits its ENTRYPOINT and CMD unless it sets them.
    """
    built = "build" in service
    entrypoint = service.get("entrypoint", exec_form(last("ENTRYPOINT")) if built else [])
    # Setting an entrypoint in compose drops the image's CMD.
    inherits_cmd = built and "entrypoint" not in service
    command = service.get("command", exec_form(last("CMD")) if inherits_cmd else [])
    return words(entrypoint) + words(command)


def words(value: str | list[Any]) -> list[str]:
    """A compose command or entrypoint, in either string or list form, as a list."""
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def hookline_services() -> list[str]:
    """The services whose container runs the ``hookline`` command."""
    return [name for name, service in SERVICES.items() if argv(service)[:1] == ["hookline"]]


def options(args: list[str]) -> dict[str, str]:
    """``--name value`` pairs of a command line."""
    return {a: b for a, b in itertools.pairwise(args) if a.startswith("--")}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """The service's volumes (short syntax), container path to host path or volume name."""
    found = {}
    for entry in service.get("volumes", []):
        source, target, *_mode = entry.split(":")
        found[target] = source
    return found


def image_layout() -> tuple[dict[str, PurePosixPath], list[PurePosixPath]]:
    """Where COPY puts each source in the image, and the paths RUN installs with pip.

    A file lands at the destination (inside it when the destination ends with ``/`` or
    several sources are copied); a directory's contents land in the destination.
    """
    workdir = PurePosixPath("/")
    landed: dict[str, PurePosixPath] = {}
    installed: list[PurePosixPath] = []
    for keyword, args in dockerfile():
        if keyword == "WORKDIR":
            workdir = workdir / args
        elif keyword == "COPY":
            *sources, dest = [a for a in shlex.split(args) if not a.startswith("--")]
            into = dest.endswith("/") or len(sources) > 1
            for src in sources:
                name = src.rstrip("/") or "."
                is_file = (ROOT / name).is_file()
                target = workdir / dest
                landed[name] = target / PurePosixPath(name).name if is_file and into else target
        elif keyword == "RUN":
            for command in re.split(r"&&|;|\|\|", args):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"] or words[1:4] == ["-m", "pip", "install"]:
                    targets = words[words.index("install") + 1 :]
                    installed += [workdir / w for w in targets if not w.startswith("-")]
    return landed, installed


class TestComposeCommands:
    def test_receiver_and_worker_run_hookline(self) -> None:
        """The receiver runs `hookline serve` and the worker `hookline work`."""
        assert argv(SERVICES["receiver"])[:2] == ["hookline", "serve"]
        assert argv(SERVICES["worker"])[:2] == ["hookline", "work"]

    @pytest.mark.parametrize("name", hookline_services())
    def test_command_is_a_real_hookline_command(self, name: str) -> None:
        """click accepts the service's command line: the command and every option exist."""
        args = argv(SERVICES[name])[1:]
        with main.make_context("hookline", list(args), resilient_parsing=False) as ctx:
            # The group has no options of its own, so its first argument is the command.
            cmd_name, command, rest = main.resolve_command(ctx, args)
            assert command is not None and cmd_name is not None
            sub = command.make_context(cmd_name, rest, parent=ctx, resilient_parsing=False)
        assert sub.params["config_path"] == "/etc/hookline/hookline.toml"

    def test_unknown_option_is_caught(self) -> None:
        """The resolution above does fail on an option hookline does not have."""
        with main.make_context("hookline", ["serve", "--nope"]) as ctx:
            _name, command, rest = main.resolve_command(ctx, ["serve", "--nope"])
            assert command is not None
            with pytest.raises(click.NoSuchOption):
                command.make_context("serve", rest, parent=ctx)

    def test_receiver_listens_on_all_interfaces_port_8080(self) -> None:
        """The receiver binds 0.0.0.0 inside its container and publishes port 8080."""
        host = options(argv(SERVICES["receiver"]))["--host"]
        assert host == "0.0.0.0"  # noqa: S104 -- in a container, the published port needs it
        assert any(str(p).split(":")[-1] == "8080" for p in SERVICES["receiver"]["ports"])

    def test_worker_runs_two_processes(self) -> None:
        """Each worker container runs two worker processes."""
        assert options(argv(SERVICES["worker"]))["--processes"] == "2"


class TestComposeServices:
    def test_redis_keeps_an_append_only_file_and_never_evicts(self) -> None:
        """Redis runs with appendonly yes, appendfsync everysec and noeviction."""
        args = argv(SERVICES["redis"])
        assert args[0] == "redis-server"
        assert options(args) == {
            "--appendonly": "yes",
            "--appendfsync": "everysec",
            "--maxmemory-policy": "noeviction",
        }

    def test_redis_data_is_on_a_named_volume(self) -> None:
        """Redis's /data survives the container: it is a named volume."""
        volume = mounts(SERVICES["redis"])["/data"]
        assert volume in COMPOSE["volumes"]

    def test_redis_has_a_healthcheck(self) -> None:
        """Redis's health check pings it."""
        assert "ping" in " ".join(SERVICES["redis"]["healthcheck"]["test"])

    def test_receiver_healthcheck_asks_readyz(self) -> None:
        """The receiver is healthy when its /readyz (Redis answers) says so."""
        test = " ".join(SERVICES["receiver"]["healthcheck"]["test"])
        assert "127.0.0.1:8080/readyz" in test

    @pytest.mark.parametrize("name", APP_SERVICES)
    def test_app_waits_for_healthy_redis(self, name: str) -> None:
        """The receiver and workers start once Redis is healthy."""
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"

    @pytest.mark.parametrize("name", APP_SERVICES)
    def test_app_uses_the_compose_redis(self, name: str) -> None:
        """HOOKLINE_REDIS_URL points at the redis service."""
        assert SERVICES[name]["environment"]["HOOKLINE_REDIS_URL"] == "redis://redis:6379/0"

    def test_worker_can_be_scaled(self) -> None:
        """`--scale worker=N` works: the worker has no fixed container name and no host port."""
        assert "container_name" not in SERVICES["worker"]
        assert "ports" not in SERVICES["worker"]


class TestComposeConfiguration:
    @pytest.mark.parametrize("name", APP_SERVICES)
    def test_config_file_is_mounted_from_the_repository(self, name: str) -> None:
        """The --config path is a mount of a file that exists in the repository."""
        path = options(argv(SERVICES[name]))["--config"]
        source = mounts(SERVICES[name])[path]
        assert (ROOT / source).is_file()

    @pytest.mark.parametrize("name", APP_SERVICES)
    def test_config_is_valid_once_its_secrets_are_set(self, name: str) -> None:
        """With the environment secrets compose passes through, the configuration checks out."""
        service = SERVICES[name]
        source = ROOT / mounts(service)[options(argv(service))["--config"]]
        env = {
            var: value if var == "HOOKLINE_REDIS_URL" else "a-secret"
            for var, value in service["environment"].items()
        }
        settings, findings = check_config(str(source), env)
        assert settings is not None, findings
        findings += check_sources(settings)
        assert [f for f in findings if f.level == "error"] == []
        assert {"stripe", "github"} <= set(settings.sources)
        assert settings.workers.handlers == ("hookline.workers.demo",)

    @pytest.mark.parametrize("name", APP_SERVICES)
    def test_every_env_secret_is_passed_through(self, name: str) -> None:
        """Each `{ env = NAME }` secret of the configuration is in the service's environment."""
        service = SERVICES[name]
        source = ROOT / mounts(service)[options(argv(service))["--config"]]
        data = tomllib.loads(source.read_text())
        wanted = {
            secret["env"]
            for table in data["sources"].values()
            for secret in table["secrets"]
            if isinstance(secret, dict)
        }
        assert wanted and wanted <= set(service["environment"])


class TestDockerfile:
    def test_base_image_is_python_311_or_later(self) -> None:
        """The final stage is built on a python:3.11+ image."""
        image = next(w for w in last("FROM").split() if not w.startswith("--"))
        match = re.match(r"^(?:docker\.io/)?(?:library/)?python:(\d+)\.(\d+)", image)
        assert match, f"not an official python image: {image}"
        assert (int(match.group(1)), int(match.group(2))) >= (3, 11)

    def test_installs_the_project_with_every_package(self) -> None:
        """pyproject.toml and each package directory are copied to one place, installed by pip."""
        landed, installed = image_layout()
        project = landed["pyproject.toml"].parent if "pyproject.toml" in landed else landed.get(".")
        assert project is not None, "pyproject.toml is not copied into the image"
        assert project in installed, f"no `pip install {project}`"
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
        include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
        for package in (p.rstrip("*") for p in include):
            assert landed.get(package) == project / package or landed.get(".") == project, package

    def test_runs_as_an_unprivileged_user(self) -> None:
        """The image's user is not root."""
        user = last("USER").split(":")[0]
        assert user not in ("root", "0")

    def test_entrypoint_is_hookline(self) -> None:
        """The entrypoint is the `hookline` script the package installs."""
        assert exec_form(last("ENTRYPOINT")) == ["hookline"]
        pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert "hookline" in pyproject["project"]["scripts"]

    def test_build_context_leaves_out_local_state(self) -> None:
        """.dockerignore keeps the virtualenv, git history and local Redis data out."""
        ignored = (ROOT / ".dockerignore").read_text().split()
        assert {".git", ".venv", ".hookline"} <= set(ignored)
