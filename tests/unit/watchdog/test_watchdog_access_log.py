from __future__ import annotations

import asyncio
import io
import json

from watchdog.access_log import FLUSH_INTERVAL_S, FLUSH_LINES, AccessLog


async def test_lines_are_valid_json_and_written_after_the_interval() -> None:
    out = io.StringIO()
    log = AccessLog(json_lines=True, out=out)
    log.request("GET", '/odd "path"', 200, 0.0012345, call_id="abc")
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
        log.request("POST", f"/{i}", 201, 0.001, call_id=None)
    assert len(out.getvalue().splitlines()) == FLUSH_LINES
    log.flush()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["path"] for line in lines] == [f"/{i}" for i in range(FLUSH_LINES + 3)]
    assert "call_id" not in lines[0]


async def test_console_lines_are_readable() -> None:
    out = io.StringIO()
    log = AccessLog(json_lines=False, out=out)
    log.request("GET", "/x", 404, 0.5, call_id=None)
    log.flush()
    assert "request GET /x status=404 duration_ms=500.0" in out.getvalue()
