"""Starting function processes and forwarding what they print, line by line.

Lines of any length are forwarded whole (of-watchdog cut lines at 64 KiB until ``log_buffer_size=-1``);
``log_buffer_size`` only sets how much is read at a time. With ``prefix_logs`` each line gets of-watchdog's
``YYYY/MM/DD HH:MM:SS stdout: `` prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import BinaryIO

import structlog

log = structlog.get_logger("watchdog.process")

READ_SIZE_DEFAULT = 65536


class OutputForwarder:
    """Copies a child's stdout/stderr to ours, one whole line at a time."""

    __slots__ = ("prefix", "read_size")

    def __init__(self, prefix: bool, log_buffer_size: int) -> None:
        self.prefix = prefix
        self.read_size = log_buffer_size if log_buffer_size > 0 else READ_SIZE_DEFAULT

    async def forward(self, reader: asyncio.StreamReader, stream: str, sink: BinaryIO | None = None) -> None:
        out = sink if sink is not None else (sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer)
        label = stream.encode() + b": "
        pending = bytearray()
        while True:
            data = await reader.read(self.read_size)
            if not data:
                break
            pending += data
            end = pending.rfind(b"\n")
            if end < 0:
                continue
            self._emit(out, label, bytes(pending[:end]).split(b"\n"))
            del pending[: end + 1]
        if pending:
            self._emit(out, label, [bytes(pending)])

    def _emit(self, out: BinaryIO, label: bytes, lines: list[bytes]) -> None:
        if self.prefix:
            stamp = time.strftime("%Y/%m/%d %H:%M:%S ").encode() + label
            out.write(b"".join(stamp + line + b"\n" for line in lines))
        else:
            out.write(b"".join(line + b"\n" for line in lines))
        out.flush()


async def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: int | None = asyncio.subprocess.DEVNULL,
) -> asyncio.subprocess.Process:
    """Start ``argv`` in its own process group with piped stdout and stderr."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
    )


async def terminate(proc: asyncio.subprocess.Process, grace_s: float) -> int:
    """SIGTERM the process group, SIGKILL it after ``grace_s``; the exit code."""
    if proc.returncode is not None:
        return proc.returncode
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace_s):
            return await proc.wait()
    except TimeoutError:
        log.warning("function_process_killed", pid=proc.pid, grace_s=grace_s)
        _signal_group(proc.pid, signal.SIGKILL)
        return await proc.wait()


async def kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group now and reap it."""
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
