"""The build hook: bake the commit a wheel is built from into it (``servicekit/_build_info.py``).

``/system/info`` reports ``provider.version.sha``. An installed pyfaasd has no ``.git`` beside it, and it never
runs ``git`` at run time, so the commit is written into the package when it is built (``pip install .`` or
``pip wheel .`` from a checkout). ``PYFAASD_COMMIT`` set at build time wins (a build from a source archive);
without either, the file says ``""``. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUILD_INFO = Path("servicekit") / "_build_info.py"


def build_commit(source: Path) -> str:
    """The commit to bake in: ``PYFAASD_COMMIT``, else the checkout's HEAD, else ``""``."""
    given = os.environ.get("PYFAASD_COMMIT", "").strip()
    if given:
        return given
    try:
        done = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    commit = done.stdout.strip()
    return commit if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit) else ""


class BuildPyWithCommit(build_py):
    """build_py, then the commit into the built package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / BUILD_INFO
        target.parent.mkdir(parents=True, exist_ok=True)
        commit = build_commit(Path(__file__).resolve().parent)
        target.write_text(f'"""Written by setup.py when this copy was built."""\n\nCOMMIT = "{commit}"\n')


setup(cmdclass={"build_py": BuildPyWithCommit})
