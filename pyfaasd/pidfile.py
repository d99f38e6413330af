"""A pid file that lives exactly as long as the process that wrote it.

``scripts/run`` starts ``pyfaasd up`` in the background and tells the user to stop it with
``kill $(cat /run/pyfaasd-up.pid)``. A file left behind after the process ended would point that ``kill`` at
whatever process reuses the pid, so the file is removed on the way out, and only if it still names us.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def pid_file(path: Path | None) -> Iterator[None]:
    """Write this process's pid to ``path`` (atomically) for the duration of the block; ``None``: no file."""
    if path is None:
        yield
        return
    pid = str(os.getpid())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{pid}")
    partial.write_text(pid + "\n")
    partial.replace(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == pid:
                path.unlink()
