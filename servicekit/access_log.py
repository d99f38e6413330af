"""One access line per request, written in batches: the watchdog's and the gateway's.

A flushed structlog line per request costs about half the throughput of a small function (the processor chain
and one write syscall each), so the lines are formatted directly as the JSON (or console text) structlog writes,
collected, and written together at most every :data:`FLUSH_INTERVAL_S`, at once when the batch is large, and on
shutdown. A batch goes out in writes of whole lines of at most :data:`WRITE_MAX` bytes: writes up to PIPE_BUF
to a pipe are atomic, so the lines of several worker processes sharing stdout never mix (a single line longer
than that is written alone and may). The services' other events go through structlog.
"""

from __future__ import annotations

import asyncio
import json
import select
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, TextIO

FLUSH_INTERVAL_S: Final = 0.05
FLUSH_LINES: Final = 256
WRITE_MAX: Final[int] = getattr(select, "PIPE_BUF", 512)  # 512: the POSIX minimum

Fields = Sequence[tuple[str, str]]


def _quoted(text: str) -> str:
    """A JSON string; the common case (printable ASCII without quotes or backslashes) without json.dumps."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


def _size(line: str) -> int:
    return len(line) if line.isascii() else len(line.encode("utf-8", "surrogateescape"))


class AccessLog:
    """Access lines of one process: method, path, status, duration, then the caller's ``fields``.

    ``worker`` (the index of a forked worker) is added to every line when given.
    """

    __slots__ = ("_extra", "_handle", "_lines", "_out", "_stamp", "_stamp_ms", "json")

    def __init__(self, json_lines: bool, out: TextIO | None = None, worker: int | None = None) -> None:
        self.json = json_lines
        self._out = out
        self._lines: list[str] = []
        self._handle: asyncio.TimerHandle | None = None
        self._stamp_ms = -1
        self._stamp = ""
        if worker is None:
            self._extra = ""
        else:
            self._extra = f', "worker": {worker}' if json_lines else f" worker={worker}"

    def request(self, method: str, path: str, status: int, duration_s: float, fields: Fields = ()) -> None:
        now_ms = time.time_ns() // 1_000_000
        if now_ms != self._stamp_ms:  # one timestamp string per millisecond, not per line
            self._stamp_ms = now_ms
            self._stamp = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        stamp = self._stamp
        ms = round(duration_s * 1000, 3)
        more = ""
        if self.json:
            for name, value in fields:
                more += f', "{name}": {_quoted(value)}'
            line = (
                f'{{"method": "{method}", "path": {_quoted(path)}, "status": {status}, "duration_ms": {ms}'
                f'{more}{self._extra}, "event": "request", "level": "info", "timestamp": "{stamp}"}}\n'
            )
        else:
            for name, value in fields:
                more += f" {name}={value}"
            line = f"{stamp} [info     ] request {method} {path} status={status} duration_ms={ms}{more}{self._extra}\n"
        self._lines.append(line)
        if len(self._lines) >= FLUSH_LINES:
            self.flush()
        elif self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._lines:
            return
        out = self._out or sys.stdout
        batch: list[str] = []
        size = 0
        for line in self._lines:
            length = _size(line)
            if batch and size + length > WRITE_MAX:
                out.write("".join(batch))
                out.flush()
                batch.clear()
                size = 0
            batch.append(line)
            size += length
        out.write("".join(batch))
        out.flush()
        self._lines.clear()
