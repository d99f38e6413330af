"""The version (the one place it is written; pyproject.toml reads it) and the git commit pyfaasd runs from."""

from __future__ import annotations

import functools
import os
from pathlib import Path

__version__ = "0.1.0"

ENV_COMMIT = "PYFAASD_COMMIT"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def commit_sha() -> str:
    """``PYFAASD_COMMIT`` if set, else the HEAD of the source checkout this runs from, else ``""``.

    Read from the ``.git`` directory (a worktree's ``.git`` file is followed), never by running ``git``, so it
    is cheap and safe on an event loop.
    """
    if os.environ.get(ENV_COMMIT):
        return os.environ[ENV_COMMIT]
    return _read_head(_SOURCE_ROOT / ".git")


def _read_head(git: Path) -> str:
    try:
        if git.is_file():  # a worktree: "gitdir: <path>", refs live in its common dir
            git = (git.parent / git.read_text().strip().removeprefix("gitdir: ")).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        loose = common / ref
        if loose.is_file():
            return loose.read_text().strip()
        for line in (common / "packed-refs").read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    except OSError:
        pass
    return ""


__all__ = ["__version__", "commit_sha"]
