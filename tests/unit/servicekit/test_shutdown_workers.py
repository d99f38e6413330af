"""servicekit.shutdown (signals as events) and servicekit.workers (forked workers and their supervisor)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

from servicekit.shutdown import Shutdown
from servicekit.workers import fork_workers, supervise


async def test_a_first_signal_requests_and_a_second_hurries() -> None:
    shutdown = Shutdown()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(shutdown.requested.wait(), 5)
    assert not shutdown.hurried.is_set()
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.wait_for(shutdown.hurried.wait(), 5)


async def test_pause_ends_early_when_hurried() -> None:
    shutdown = Shutdown()
    shutdown.hurried.set()
    await asyncio.wait_for(shutdown.pause(30), 5)


def _until_sigterms(count: int) -> Callable[[int], int]:
    """A worker that exits 0 after ``count`` SIGTERMs (it starts with SIGTERM blocked: see ``_fork``)."""

    def child(index: int) -> int:
        for _ in range(count):
            if signal.sigtimedwait({signal.SIGTERM}, 20) is None:
                return 9  # never told to stop
        return 0

    return child


def _fork(count: int, child: Callable[[int], int]) -> list[int]:
    """Fork with SIGTERM blocked, so no worker can get one before it waits for it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        return fork_workers(count, child)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


async def test_fork_workers_gives_each_its_index() -> None:
    pids = _fork(3, lambda index: index)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    assert codes == [0, 1, 2]


async def test_a_requested_stop_signals_every_worker_and_exits_0() -> None:
    pids = _fork(2, _until_sigterms(1))
    shutdown = Shutdown()
    stopped: list[str] = []
    shutdown.requested.set()
    code = await asyncio.wait_for(supervise(pids, shutdown, on_stop=lambda: stopped.append("draining")), 20)
    assert (code, stopped) == (0, ["draining"])


async def test_a_worker_that_exits_first_stops_the_others_and_exits_1() -> None:
    def child(index: int) -> int:
        return 3 if index == 0 else _until_sigterms(1)(index)

    pids = _fork(3, child)
    shutdown = Shutdown()
    stopped: list[str] = []
    code = await asyncio.wait_for(supervise(pids, shutdown, on_stop=lambda: stopped.append("draining")), 20)
    assert (code, stopped) == (1, ["draining"])
    assert not shutdown.requested.is_set()


async def test_a_second_signal_is_passed_on_to_the_workers() -> None:
    pids = _fork(2, _until_sigterms(2))  # they finish only when hurried
    shutdown = Shutdown()
    shutdown.requested.set()
    supervising = asyncio.create_task(supervise(pids, shutdown))
    await asyncio.sleep(0.3)
    assert not supervising.done()
    shutdown.hurried.set()
    assert await asyncio.wait_for(supervising, 20) == 0


async def test_a_worker_failing_while_stopping_makes_the_code_1() -> None:
    pids = _fork(2, lambda index: _until_sigterms(1)(index) + index)  # worker 1 exits 1 on SIGTERM
    shutdown = Shutdown()
    shutdown.requested.set()
    assert await asyncio.wait_for(supervise(pids, shutdown), 20) == 1
