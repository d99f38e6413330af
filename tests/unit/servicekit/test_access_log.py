"""The batched access log of the watchdog and the gateway."""

from __future__ import annotations

import asyncio
import io
import json

from servicekit.access_log import FLUSH_INTERVAL_S, FLUSH_LINES, WRITE_MAX, AccessLog


async def test_lines_are_valid_json_and_written_after_the_interval() -> None:
    out = io.StringIO()
    log = AccessLog(json_lines=True, out=out)
    log.request("GET", '/odd "path"', 200, 0.0012345, (("call_id", "abc"),))
    assert out.getvalue() == ""  # batched, not yet written
    await asyncio.sleep(FLUSH_INTERVAL_S * 3)
    line = json.loads(out.getvalue())
    assert line["path"] == '/odd "path"'
    assert (line["method"], line["status"], line["duration_ms"], line["call_id"]) == ("GET", 200, 1.234, "abc")
    assert (line["event"], line["level"]) == ("request", "info")
    assert line["timestamp"].endswith("Z")


async def test_a_full_batch_is_written_at_once_and_nothing_is_lost() -> None:
    out = io.StringIO()
    log = AccessLog(json_lines=True, out=out)
    for i in range(FLUSH_LINES + 3):
        log.request("POST", f"/{i}", 201, 0.001)
    assert len(out.getvalue().splitlines()) == FLUSH_LINES
    log.flush()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["path"] for line in lines] == [f"/{i}" for i in range(FLUSH_LINES + 3)]
    assert "call_id" not in lines[0]


async def test_console_lines_are_readable() -> None:
    out = io.StringIO()
    log = AccessLog(json_lines=False, out=out)
    log.request("GET", "/x", 404, 0.5)
    log.flush()
    assert "request GET /x status=404 duration_ms=500.0" in out.getvalue()


async def test_fields_and_the_worker_are_added_to_every_line() -> None:
    out = io.StringIO()
    log = AccessLog(json_lines=True, out=out, worker=1)
    log.request("GET", "/function/f", 200, 0.002, (("function", "f.openfaas-fn"), ("request_id", "é\n")))
    console = io.StringIO()
    text = AccessLog(json_lines=False, out=console, worker=1)
    text.request("GET", "/function/f", 502, 0.002, (("function", "f.openfaas-fn"), ("request_id", "r1")))
    log.flush()
    text.flush()
    line = json.loads(out.getvalue())
    assert (line["function"], line["request_id"], line["worker"]) == ("f.openfaas-fn", "é\n", 1)
    assert console.getvalue().endswith(" status=502 duration_ms=2.0 function=f.openfaas-fn request_id=r1 worker=1\n")


class Writes(io.StringIO):
    """Records what each write then flush handed on, as a pipe would see it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        return super().write(text)

    def flush(self) -> None:
        if self._pending:
            self.writes.append(self._pending)
            self._pending = ""


async def test_a_batch_larger_than_pipe_buf_goes_out_in_whole_lines_of_at_most_pipe_buf() -> None:
    """Workers share stdout: a write over PIPE_BUF to a pipe may interleave with another worker's."""
    out = Writes()
    log = AccessLog(json_lines=True, out=out, worker=3)
    for i in range(FLUSH_LINES - 1):
        log.request("GET", f"/function/f/{'p' * (i % 50)}", 200, 0.001, (("request_id", f"id-{i}"),))
    log.flush()
    assert sum(len(w.encode()) for w in out.writes) > 10 * WRITE_MAX
    assert len(out.writes) > 10
    for write in out.writes:
        assert len(write.encode()) <= WRITE_MAX
        assert write.endswith("\n")
    lines = "".join(out.writes).splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"id-{i}" for i in range(FLUSH_LINES - 1)]
    assert out.getvalue() == "".join(out.writes)
