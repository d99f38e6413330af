"""servicekit.log: one set-up for every process; stdlib loggers come out like structlog's own lines."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from servicekit.log import configure_logging

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("gateway", "netconf", "provider", "pyfaasd", "servicekit", "watchdog")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**config)
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_from_structlog_and_the_stdlib_alike() -> None:
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    structlog.get_logger("test").info("own_event", answer=42)
    logging.getLogger("aiohttp.server").warning("stdlib %s", "message")
    logging.getLogger("aiohttp.server").debug("below the level")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("aiodocker").exception("failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("own_event", "info"),
        ("stdlib message", "warning"),
        ("failed", "error"),
    ]
    assert lines[0]["answer"] == 42
    assert all("timestamp" in line for line in lines)
    assert lines[2]["exception"][0]["exc_type"] == "RuntimeError"  # a structured traceback, as structlog's own


@pytest.mark.usefixtures("restore_logging")
def test_console_lines_from_structlog_and_the_stdlib_alike() -> None:
    out = io.StringIO()
    configure_logging("debug", json=False, stream=out)
    structlog.get_logger("test").debug("own_event", answer=42)
    logging.getLogger("aiohttp.server").info("stdlib line")
    text = out.getvalue()
    assert re.search(r"\[debug\s*\] own_event\s+answer=42", text)
    assert re.search(r"\[info\s*\] stdlib line", text)


def test_no_module_sets_up_stdlib_logging_of_its_own() -> None:
    # netconf logged through the stdlib and the watchdog had its own set-up (watchdog/log.py); now only
    # servicekit/log.py touches the stdlib's logging, and every module logs through structlog.
    users = sorted(
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"^import logging|^from logging", path.read_text(), re.MULTILINE)
    )
    assert users == ["servicekit/log.py"]
