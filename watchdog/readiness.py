"""Readiness of one watchdog: the shared flags and the lock file kept in step with them.

``/_/health`` and ``/_/ready`` read the flags. The lock file (``$TMPDIR/.lock``) exists exactly while the
watchdog is ready and not draining, for exec health checks (``fwatchdog --run-healthcheck``), unless
``suppress_lock`` is set.
"""

from __future__ import annotations

import contextlib
import os

import structlog

from watchdog.shared import Flags

log = structlog.get_logger("watchdog.readiness")


class Readiness:
    __slots__ = ("flags", "lock_path", "suppress_lock")

    def __init__(self, flags: Flags, lock_path: str, suppress_lock: bool) -> None:
        self.flags = flags
        self.lock_path = lock_path
        self.suppress_lock = suppress_lock

    def mark_ready(self) -> None:
        if self.flags.draining:
            return
        if not self.suppress_lock:
            fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT, 0o660)
            os.close(fd)
        if not self.flags.ready:
            self.flags.ready = True
            log.info("watchdog_ready")

    def mark_unready(self) -> None:
        self.flags.ready = False
        self._remove_lock()

    def start_draining(self) -> None:
        self.flags.draining = True
        self._remove_lock()

    def _remove_lock(self) -> None:
        if not self.suppress_lock:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.lock_path)
