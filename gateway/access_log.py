"""One access line per ``/function`` request, written in batches.

A flushed structlog line per request costs about half the throughput of a small function (the processor chain
and one write syscall each), so the lines are formatted directly as the JSON (or console text) structlog writes,
collected, and written together at most every :data:`FLUSH_INTERVAL_S`, at once when the batch is large, and on
shutdown. The gateway's other events go through structlog.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Final, TextIO

FLUSH_INTERVAL_S: Final = 0.05
FLUSH_LINES: Final = 256
# Writes up to PIPE_BUF bytes to a pipe are atomic, so lines of several workers sharing stdout never mix.
WRITE_MAX: Final = 4096


def _quoted(text: str) -> str:
    """A JSON string; the common case (printable ASCII without quotes or backslashes) without json.dumps."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return json.dumps(text)


class AccessLog:
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

    def request(self, method: str, path: str, function: str, status: int, duration_s: float, call_id: str) -> None:
        now_ms = time.time_ns() // 1_000_000
        if now_ms != self._stamp_ms:  # one timestamp string per millisecond, not per line
            self._stamp_ms = now_ms
            self._stamp = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        stamp = self._stamp
        ms = round(duration_s * 1000, 3)
        if self.json:
            line = (
                f'{{"method": "{method}", "path": {_quoted(path)}, "function": {_quoted(function)}, '
                f'"status": {status}, "duration_ms": {ms}, "request_id": {_quoted(call_id)}{self._extra}, '
                f'"event": "request", "level": "info", "timestamp": "{stamp}"}}\n'
            )
        else:
            line = (
                f"{stamp} [info     ] request {method} {path} function={function} status={status} "
                f"duration_ms={ms} request_id={call_id}{self._extra}\n"
            )
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
            if batch and size + len(line) > WRITE_MAX:
                out.write("".join(batch))
                out.flush()
                batch.clear()
                size = 0
            batch.append(line)
            size += len(line)
        out.write("".join(batch))
        out.flush()
        self._lines.clear()
