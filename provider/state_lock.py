"""One provider per state dir: an exclusive lock taken before anything else is touched.

Two providers on one state dir would both run recovery (bridge, re-attach, hosts file) and fight over every
container. The lock is ``<state>/provider.lock`` held with ``flock`` for the life of the process (the kernel
drops it if the process dies), holding the pid for the message the second one prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from provider.errors import StateDirBusyError

LOCK_FILE = "provider.lock"
_HELD: set[Path] = set()  # state dirs this process holds: taken again (``pyfaasd up``, then its provider) is a no-op


@contextlib.contextmanager
def state_dir_lock(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    key = state_dir.resolve()
    if key in _HELD:
        yield
        return
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StateDirBusyError(
                f"another pyfaasd provider (pid {holder}) uses the state dir {state_dir}: stop it, "
                "or give this one its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)
