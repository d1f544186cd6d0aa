"""A virtual environment of its own for a peer whose requirements clash with hookline's.

arq (0.28, its latest) pins redis-py below 6; hookline's environment has redis-py 8
(its tests type-check against it, and Celery 5.7 needs 6.4 or later). So arq is not in
the ``bench`` extra: the benchmark installs it, from PyPI with pip, into an
environment beside the one running it (``<venv>/peer-venvs/arq``, removed with it), and
runs arq's worker and the filling of its queue from there. Same Python, same machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import BenchError

#: What is installed for arq, pinned as loosely as the ``bench`` extra pins the others.
ARQ_REQUIREMENT = "arq>=0.26,<1"
#: Where the environments go: beside the running one's packages, gone when it is.
HOME = Path(sys.prefix) / "peer-venvs"
#: Longest an install may take.
INSTALL_TIMEOUT = 600


def python_of(name: str) -> Path:
    """Where environment ``name``'s Python is (or would be)."""
    return HOME / name / "bin" / "python"


def environment(name: str, requirement: str) -> Path:
    """The Python of environment ``name`` holding ``requirement``, created if needed.

    Raises:
        BenchError: when the environment cannot be created or the package installed.
    """
    home, python = HOME / name, python_of(name)
    stamp = home / "installed.txt"
    if python.exists() and stamp.exists() and stamp.read_text() == requirement:
        return python
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps = [[sys.executable, "-m", "venv", str(home)], [*pip, requirement]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"could not install {requirement}: {exc}") from None
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-1500:]
            raise BenchError(f"could not install {requirement} into {home}:\n{tail}")
    stamp.write_text(requirement)
    return python


def installed_version(python: Path, package: str) -> str | None:
    """The version of ``package`` in the environment of ``python``, or ``None``."""
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None
