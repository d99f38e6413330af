"""Forked serving processes and their supervisor: fork them, run until a stop or the first exit, stop the rest.

Used by the watchdog's ``workers`` and by the gateway's ``--workers``. Each worker binds the port with
SO_REUSEPORT itself; the first process only supervises. Stdlib and structlog only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable

import structlog

from servicekit.shutdown import Shutdown

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


def fork_workers(count: int, child: Callable[[int], int]) -> list[int]:
    """Fork ``count`` workers; worker ``i`` runs ``child(i)`` and exits with its code. Their pids, in order."""
    return [fork_child(functools.partial(child, index)) for index in range(count)]


async def supervise(pids: list[int], shutdown: Shutdown, *, on_stop: Callable[[], object] | None = None) -> int:
    """Wait for a stop request or the first worker to exit, then stop the others; the exit code.

    ``on_stop`` runs once, before the workers are sent SIGTERM (the watchdog reports itself draining there).
    A second signal (``shutdown.hurried``) is passed on to the workers. The code is 0 when the stop was
    requested and every worker exited 0, else 1 (a worker that exits first is logged as ``worker_exited``).
    """
    running = list(pids)
    lost = asyncio.create_task(first_exit(running))
    requested = asyncio.create_task(shutdown.requested.wait())
    await asyncio.wait({lost, requested}, return_when=asyncio.FIRST_COMPLETED)
    requested.cancel()
    lost.cancel()
    code = 0
    if lost.done() and not lost.cancelled():
        pid, status = lost.result()
        log.error("worker_exited", pid=pid, status=status)
        running.remove(pid)
        code = 1
    if on_stop is not None:
        on_stop()
    for pid in running:
        send_signal(pid, signal.SIGTERM)
    hurry = asyncio.create_task(_pass_on_hurry(shutdown, running))
    try:
        for pid in running:
            if await wait_exit(pid) != 0:
                code = 1
    finally:
        hurry.cancel()
    return code


async def _pass_on_hurry(shutdown: Shutdown, pids: list[int]) -> None:
    await shutdown.hurried.wait()
    for pid in pids:
        send_signal(pid, signal.SIGTERM)


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
