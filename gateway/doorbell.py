"""A wake-up from any gateway process to the one that dispatches async calls: "something was queued".

An abstract-namespace Unix datagram socket named after the queue's directory (Linux; nothing on disk, no path
length limit, gone when its process dies). The dispatcher binds it and reads; every serving process rings it
after a commit with one non-blocking ``sendto`` that costs about two microseconds and never fails the caller:
with no dispatcher listening or a full socket buffer the ring is dropped, and the dispatcher's own poll (at
least once a second) finds the call anyway. So the doorbell only makes dispatch prompt; correctness never
depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from pathlib import Path


def address(queue_dir: Path) -> bytes:
    digest = hashlib.sha256(os.path.realpath(queue_dir).encode()).hexdigest()[:32]
    return b"\0pyfaasd-async-" + digest.encode()


class Doorbell:
    """Rung by every process; :meth:`listen` by the dispatcher only."""

    def __init__(self, queue_dir: Path) -> None:
        self._address = address(queue_dir)
        self._sender: socket.socket | None = None
        self._listener: socket.socket | None = None
        self.rang = asyncio.Event()

    def ring(self) -> None:
        if self._listener is not None:  # this process dispatches: no syscall needed
            self.rang.set()
            return
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        # Nobody listens, or the buffer is full: the dispatcher's poll finds the call.
        with contextlib.suppress(OSError):
            self._sender.sendto(b"\x01", self._address)

    def ring_here(self) -> None:
        """Wake the dispatcher if it is this process (a change seen in a shared queue: every process sees it)."""
        if self._listener is not None:
            self.rang.set()

    def listen(self) -> None:
        """Bind the address and set :attr:`rang` on every ring (call from the running loop)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            listener.bind(self._address)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener.fileno(), self._drain)

    def _drain(self) -> None:
        assert self._listener is not None
        try:
            while self._listener.recv(64):
                pass
        except OSError:
            pass
        self.rang.set()

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
