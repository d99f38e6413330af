from __future__ import annotations

import os

from watchdog.shared import Flags, Limiter


def test_local_limiter_counts_to_its_limit() -> None:
    limiter = Limiter(2, shared=False)
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    assert limiter.full
    assert not limiter.try_acquire()
    limiter.release()
    assert not limiter.full
    assert limiter.try_acquire()


def test_shared_limiter_is_one_count_across_processes() -> None:
    limiter = Limiter(1, shared=True)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if limiter.try_acquire() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert limiter.full  # the child's slot was never released
    assert not limiter.try_acquire()


def test_no_limit_never_refuses() -> None:
    limiter = Limiter(0, shared=True)
    assert all(limiter.try_acquire() for _ in range(1000))
    assert not limiter.full


def test_flags_are_shared_with_a_forked_child() -> None:
    flags = Flags()
    pid = os.fork()
    if pid == 0:
        flags.ready = True
        flags.draining = True
        os._exit(0)
    os.waitpid(pid, 0)
    assert flags.ready
    assert flags.draining
    assert not flags.healthy
