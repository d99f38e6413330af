"""A pooled runtime container's watchdog: started before any function is known, it waits to be given one.

The provider starts containers of a runtime ahead of need (``provider/pool.py``) with ``pyfaasd_pool_load`` set
to the path of a load file in a directory only the provider can write (a read-only bind of
``<state>/pool/<slot>/control``). The watchdog imports everything it will need, then waits on the FIFO beside
that file; when the provider has put the function's code, packages and secrets in place and written the load
file (the environment the function's replica would have been created with), it pokes the FIFO. The watchdog then
adds that environment to its own, and goes on exactly as a watchdog started with it: the configuration, the
handler and every process it starts see the function's variables. A pooled container serves one function for
its whole life: after a restart the load file is there already and the watchdog goes on at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
from pathlib import Path
from typing import Final

from servicekit.pool_handover import ENV_LOAD, FIFO_NAME

__all__ = ["ENV_LOAD", "LoadError", "take_function", "wait_for_load"]

RECHECK_S: Final = 1.0  # the load file is looked at again this often even without a poke


class LoadError(Exception):
    """The load file is unreadable or not a JSON object of strings."""


def prewarm() -> None:
    """Import what serving will import, so loading a function costs only its own handler."""
    import watchdog.executor.python
    import watchdog.server  # noqa: F401


def read_load(path: Path) -> dict[str, str] | None:
    """The environment the load file gives, or None while there is none."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LoadError(f"{path}: {exc}") from None
    env = data.get("env") if isinstance(data, dict) else None
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise LoadError(f"{path}: 'env' must be an object of strings")
    return env


def wait_for_load(path: Path) -> dict[str, str]:
    """Block until the provider writes the load file; its environment.

    The FIFO is opened before the file is looked at, so a poke that comes between the two is not lost; with no
    writer yet, the FIFO never reads as hung up.
    """
    fd = -1
    with contextlib.suppress(OSError):
        fd = os.open(path.parent / FIFO_NAME, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            env = read_load(path)
            if env is not None:
                return env
            if fd < 0:
                select.select([], [], [], RECHECK_S / 20)
                continue
            ready, _, _ = select.select([fd], [], [], RECHECK_S)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 64)
    finally:
        if fd >= 0:
            os.close(fd)


def take_function(environ: dict[str, str] | os._Environ[str]) -> None:
    """In a pooled container: wait for the function and lay its environment over ``environ``; else nothing."""
    location = environ.pop(ENV_LOAD, None)
    if not location:
        return
    prewarm()
    environ.update(wait_for_load(Path(location)))
