"""The version and, when it can be found, the git commit pyfaasd runs from (for /system/info)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from pyfaasd import __version__

ENV_COMMIT = "PYFAASD_COMMIT"


@functools.cache
def commit_sha() -> str:
    """``PYFAASD_COMMIT`` if set, else the HEAD of a source checkout, else an empty string."""
    if os.environ.get(ENV_COMMIT):
        return os.environ[ENV_COMMIT]
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return ""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


__all__ = ["__version__", "commit_sha"]
