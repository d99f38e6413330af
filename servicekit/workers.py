"""Forked serving processes: start one, wait for the first to exit, wait for one, signal one.

Used by the watchdog's ``workers`` and by the gateway's ``--workers`` (the gateway may import this module, as it
does ``servicekit.upstream``: docs/architecture.md, "Decisions → Packages"). Stdlib and structlog only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable

import structlog

log = structlog.get_logger("workers")

FIRST_EXIT_POLL_S = 0.2  # how often a supervisor looks for a worker that died
EXIT_POLL_S = 0.05  # how often it looks while waiting for one it stopped


def fork_child(child: Callable[[], int]) -> int:
    """Fork; the child runs ``child`` and exits with its code (1 if it raised). Returns the child's pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = child()
    except BaseException:
        log.exception("worker_crashed")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


async def first_exit(pids: list[int]) -> tuple[int, int]:
    """The pid and exit code of the first of ``pids`` to exit."""
    while True:
        for pid in pids:
            done, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222  (WNOHANG never blocks)
            if done:
                return pid, os.waitstatus_to_exitcode(status)
        await asyncio.sleep(FIRST_EXIT_POLL_S)


async def wait_exit(pid: int) -> int:
    """The exit code of ``pid`` once it exits."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222  (WNOHANG never blocks)
        if done:
            return os.waitstatus_to_exitcode(status)
        await asyncio.sleep(EXIT_POLL_S)


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Signal ``pid`` unless it is already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
