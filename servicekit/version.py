"""The version (the one place it is written; pyproject.toml reads it) and the git commit pyfaasd runs from."""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path

__version__ = "0.1.0"

ENV_COMMIT = "PYFAASD_COMMIT"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def commit_sha() -> str:
    """``PYFAASD_COMMIT`` if set, else the commit baked in when this copy was built, else the HEAD of the source
    checkout it runs from (not installed), else ``""``.

    An installed copy carries ``servicekit/_build_info.py``, written by the build hook in ``setup.py``. A source
    checkout's HEAD is read from the ``.git`` directory (a worktree's ``.git`` file is followed). ``git`` is never
    run, so this is cheap and safe on an event loop.
    """
    if os.environ.get(ENV_COMMIT):
        return os.environ[ENV_COMMIT]
    baked = built_commit()
    if baked is not None:
        return baked
    return _read_head(_SOURCE_ROOT / ".git")


def built_commit() -> str | None:
    """The commit written into this copy when it was built; None when it was not built (a source checkout)."""
    try:
        info = importlib.import_module("servicekit._build_info")
    except ImportError:
        return None
    commit = getattr(info, "COMMIT", None)
    return commit if isinstance(commit, str) else None


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


__all__ = ["__version__", "built_commit", "commit_sha"]
