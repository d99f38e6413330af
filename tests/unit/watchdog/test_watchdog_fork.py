"""streaming and serializing modes: one real process per request (cat, env, sh)."""

from __future__ import annotations

import asyncio

import pytest

from tests.watchdog_harness import StartWatchdog


async def test_serializing_cat_echoes_the_body_with_content_type(start_watchdog: StartWatchdog) -> None:
    harness = await start_watchdog({"mode": "serializing", "fprocess": "cat", "content_type": "text/plain"})
    response = await harness.client.post("/", data=b"hello serializing")
    assert response.status == 200
    assert await response.read() == b"hello serializing"
    assert response.headers["Content-Type"] == "text/plain"
    assert "X-Duration-Seconds" in response.headers


async def test_streaming_cat_echoes_the_body_with_default_content_type(start_watchdog: StartWatchdog) -> None:
    harness = await start_watchdog({"mode": "streaming", "fprocess": "cat"})
    response = await harness.client.post("/", data=b"x" * 300_000)
    assert response.status == 200
    assert await response.read() == b"x" * 300_000
    assert response.headers["Content-Type"] == "application/octet-stream"


@pytest.mark.parametrize("mode", ["streaming", "serializing"])
async def test_env_shows_the_cgi_variables(
    start_watchdog: StartWatchdog, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNCTION_SETTING", "kept")
    harness = await start_watchdog({"mode": mode, "fprocess": "env"})
    response = await harness.client.post(
        "/some/path?a=1&b=2", data=b"", headers={"X-Call-Id": "call-1", "content-type": "text/csv"}
    )
    env = dict(line.split("=", 1) for line in (await response.text()).splitlines() if "=" in line)
    assert env["Http_Method"] == "POST"
    assert env["Http_Query"] == "a=1&b=2"
    assert env["Http_Path"] == "/some/path"
    assert env["Http_X_Call_Id"] == "call-1"
    assert env["Http_Content_Type"] == "text/csv"
    assert env["FUNCTION_SETTING"] == "kept"  # the watchdog's own environment is passed on


async def test_serializing_failure_is_500_with_the_exit_status(start_watchdog: StartWatchdog) -> None:
    harness = await start_watchdog({"mode": "serializing", "fprocess": "sh -c 'echo partial; exit 3'"})
    response = await harness.client.post("/", data=b"")
    assert response.status == 500
    assert await response.text() == "exit status 3\n"


async def test_streaming_failure_before_any_output_is_500(start_watchdog: StartWatchdog) -> None:
    harness = await start_watchdog({"mode": "streaming", "fprocess": "sh -c 'exit 4'"})
    response = await harness.client.post("/", data=b"")
    assert response.status == 500
    assert await response.text() == "exit status 4\n"


async def test_streaming_sends_output_as_it_is_written(start_watchdog: StartWatchdog) -> None:
    harness = await start_watchdog({"mode": "streaming", "fprocess": "sh -c 'echo one; sleep 0.6; echo two'"})
    loop = asyncio.get_running_loop()
    response = await harness.client.get("/")
    first = await response.content.readline()
    at_first = loop.time()
    second = await response.content.readline()
    assert (first, second) == (b"one\n", b"two\n")
    assert loop.time() - at_first > 0.3


@pytest.mark.parametrize("mode", ["streaming", "serializing"])
async def test_exec_timeout_kills_the_process_and_is_504(start_watchdog: StartWatchdog, mode: str) -> None:
    harness = await start_watchdog({"mode": mode, "fprocess": "sleep 5", "exec_timeout": "200ms"})
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await harness.client.post("/", data=b"")
    assert response.status == 504
    assert loop.time() - started < 2


async def test_a_missing_executable_is_a_500_not_a_crash(start_watchdog: StartWatchdog) -> None:
    harness = await start_watchdog({"mode": "serializing", "fprocess": "/nonexistent/fn"})
    response = await harness.client.post("/", data=b"")
    assert response.status == 500
    assert response.headers["X-OpenFaaS-Internal"] == "of-watchdog"
    assert "cannot start" in await response.text()
    assert (await harness.client.post("/", data=b"")).status == 500  # and the watchdog still serves


async def test_stderr_is_logged_not_returned(start_watchdog: StartWatchdog, capfd) -> None:
    harness = await start_watchdog(
        {"mode": "serializing", "fprocess": "sh -c 'echo out; echo oops >&2'", "prefix_logs": "true"}
    )
    response = await harness.client.post("/", data=b"")
    assert await response.text() == "out\n"
    await asyncio.sleep(0.1)
    assert "stderr: oops" in capfd.readouterr().err
