"""python mode: handler.py loaded once and called in-process."""

from __future__ import annotations

import asyncio
import re
import secrets
import textwrap
from pathlib import Path

import pytest

from tests.watchdog_harness import StartWatchdog
from watchdog.config import WatchdogConfig
from watchdog.errors import StartupError
from watchdog.executor.python import PythonExecutor, load_handler


def write_handler(directory: Path, source: str, *, package: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "handler.py").write_text(textwrap.dedent(source))
    if package:
        (directory / "__init__.py").write_text("")
    return directory


async def start_python(start_watchdog: StartWatchdog, directory: Path, **env: str):
    return await start_watchdog({"mode": "python", "function_path": str(directory), **env})


async def test_classic_python3_template_handle_gets_the_body_as_text(start_watchdog, tmp_path: Path) -> None:
    fn = write_handler(
        tmp_path / "fn",
        """
        def handle(req):
            return "Hello! You said: " + req
        """,
    )
    harness = await start_python(start_watchdog, fn)
    response = await harness.client.post("/", data="héllo".encode())
    assert response.status == 200
    assert await response.text() == "Hello! You said: héllo"
    assert response.headers["Content-Type"].startswith("text/plain")


async def test_event_style_sees_body_headers_method_query_and_path(start_watchdog, tmp_path: Path) -> None:
    fn = write_handler(
        tmp_path / "fn",
        """
        def handle(event, context):
            return {
                "statusCode": 201,
                "body": {
                    "body": event.body.decode(),
                    "header": event.headers["x-thing"],
                    "method": event.method,
                    "query": event.query["q"],
                    "path": event.path,
                    "call": context.call_id,
                },
                "headers": {"X-Handled": "yes"},
            }
        """,
    )
    harness = await start_python(start_watchdog, fn)
    response = await harness.client.post(
        "/some/path?q=1", data=b"payload", headers={"X-Thing": "t", "X-Call-Id": "abc"}
    )
    assert response.status == 201
    assert response.headers["X-Handled"] == "yes"
    assert response.headers["Content-Type"] == "application/json"
    assert "X-Duration-Seconds" in response.headers
    assert await response.json() == {
        "body": "payload",
        "header": "t",
        "method": "POST",
        "query": "1",
        "path": "/some/path",
        "call": "abc",
    }


@pytest.mark.parametrize(
    ("returned", "status", "body", "content_type"),
    [
        ("'hello'", 200, b"hello", "text/plain; charset=utf-8"),
        ("b'raw'", 200, b"raw", "application/octet-stream"),
        ("('gone', 410)", 410, b"gone", "text/plain; charset=utf-8"),
        ("('x', 202, {'Content-Type': 'text/csv'})", 202, b"x", "text/csv"),
        ("{'a': 1}", 200, b'{"a": 1}', "application/json"),
        ("[1, 2]", 200, b"[1, 2]", "application/json"),
        ("None", 200, b"", None),
        ("{'statusCode': 204}", 204, b"", None),
    ],
)
async def test_event_style_return_values(start_watchdog, tmp_path: Path, returned, status, body, content_type) -> None:
    fn = write_handler(tmp_path / "fn", f"def handle(event, context):\n    return {returned}\n")
    harness = await start_python(start_watchdog, fn)
    response = await harness.client.get("/")
    assert response.status == status
    assert await response.read() == body
    if content_type:
        assert response.headers["Content-Type"] == content_type


async def test_run_style_takes_a_json_object_as_keyword_arguments(start_watchdog, tmp_path: Path) -> None:
    fn = write_handler(tmp_path / "fn", "def run(x, y=2):\n    return {'sum': x + y}\n")
    harness = await start_python(start_watchdog, fn)
    response = await harness.client.post("/", json={"x": 1, "y": 5})
    assert response.status == 200
    assert await response.json() == {"sum": 6}
    assert (await (await harness.client.post("/", json={"x": 1})).json()) == {"sum": 3}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"z": 1}', "do not fit run(x, y=2)"),
        (b"", "do not fit run(x, y=2)"),
    ],
)
async def test_run_style_bad_arguments_are_400_naming_the_problem(start_watchdog, tmp_path, body, message) -> None:
    fn = write_handler(tmp_path / "fn", "def run(x, y=2):\n    return x + y\n")
    harness = await start_python(start_watchdog, fn)
    response = await harness.client.post("/", data=body)
    assert response.status == 400
    assert message in await response.text()


async def test_handle_wins_over_run_when_both_exist(start_watchdog, tmp_path: Path) -> None:
    fn = write_handler(tmp_path / "fn", "def handle(e, c):\n    return 'handle'\ndef run():\n    return 'run'\n")
    harness = await start_python(start_watchdog, fn)
    assert await (await harness.client.get("/")).text() == "handle"


async def test_an_exception_is_500_with_the_traceback_in_the_log_not_the_body(
    start_watchdog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fn = write_handler(tmp_path / "fn", "def handle(e, c):\n    raise RuntimeError('secret detail')\n")
    harness = await start_python(start_watchdog, fn)
    response = await harness.client.get("/")
    assert response.status == 500
    assert response.headers["X-OpenFaaS-Internal"] == "of-watchdog"
    text = await response.text()
    assert "secret detail" not in text
    assert "Traceback" not in text
    assert "secret detail" in capsys.readouterr().out


async def test_async_handlers_run_on_the_loop_concurrently(start_watchdog, tmp_path: Path) -> None:
    fn = write_handler(
        tmp_path / "fn",
        """
        import asyncio
        async def handle(event, context):
            await asyncio.sleep(0.3)
            return "done"
        """,
    )
    harness = await start_python(start_watchdog, fn)
    started = asyncio.get_running_loop().time()
    responses = await asyncio.gather(*(harness.client.get("/") for _ in range(10)))
    assert [r.status for r in responses] == [200] * 10
    assert asyncio.get_running_loop().time() - started < 2.0  # ten 0.3 s sleeps did not run one after another


async def test_sync_handlers_run_in_a_thread_pool_sized_by_max_inflight(start_watchdog, tmp_path: Path) -> None:
    fn = write_handler(
        tmp_path / "fn",
        """
        import threading, time
        def handle(event, context):
            time.sleep(0.2)
            return threading.current_thread().name
        """,
    )
    harness = await start_python(start_watchdog, fn, max_inflight="3")
    responses = await asyncio.gather(*(harness.client.get("/") for _ in range(3)))
    names = {await r.text() for r in responses}
    assert all(name.startswith("handler") for name in names)
    assert len(names) == 3


async def test_exec_timeout_is_504(start_watchdog, tmp_path: Path) -> None:
    fn = write_handler(tmp_path / "fn", "import asyncio\nasync def handle(e, c):\n    await asyncio.sleep(5)\n")
    harness = await start_python(start_watchdog, fn, exec_timeout="0.2s")
    response = await harness.client.get("/")
    assert response.status == 504
    assert response.headers["X-OpenFaaS-Internal"] == "of-watchdog"


async def test_x_timeout_shortens_but_never_extends_exec_timeout(start_watchdog, tmp_path: Path) -> None:
    fn = write_handler(
        tmp_path / "fn", "import asyncio\nasync def handle(e, c):\n    await asyncio.sleep(0.5)\n    return 'ok'\n"
    )
    harness = await start_python(start_watchdog, fn, exec_timeout="2s")
    assert (await harness.client.get("/", headers={"X-Timeout": "100ms"})).status == 504
    assert (await harness.client.get("/", headers={"X-Timeout": "10s"})).status == 200


async def test_a_package_handler_can_use_relative_imports(start_watchdog, tmp_path: Path) -> None:
    fn = write_handler(
        tmp_path / "function", "from .helper import greet\ndef handle(e, c):\n    return greet()\n", package=True
    )
    (fn / "helper.py").write_text("def greet():\n    return 'hi from helper'\n")
    harness = await start_python(start_watchdog, fn)
    assert await (await harness.client.get("/")).text() == "hi from helper"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (None, "no handler.py"),
        ("x = 1\n", "defines neither handle(event, context) nor run(...)"),
        ("raise RuntimeError('boom')\n", "failed to import"),
        ("import no_such_module_here\n", "imports modules that are not installed: no_such_module_here"),
        ("handle = 3\n", "handle is not a function"),
    ],
)
def test_a_handler_that_cannot_load_is_a_startup_error(tmp_path: Path, source: str | None, message: str) -> None:
    directory = tmp_path / "fn"
    directory.mkdir()
    if source is not None:
        (directory / "handler.py").write_text(source)
    with pytest.raises(StartupError, match=re.escape(message)):
        load_handler(WatchdogConfig.from_env({"mode": "python", "function_path": str(directory)}))


async def test_max_inflight_gives_429_with_the_of_watchdog_body(start_watchdog, tmp_path: Path) -> None:
    fn = write_handler(tmp_path / "fn", "import asyncio\nasync def handle(e, c):\n    await asyncio.sleep(0.5)\n")
    harness = await start_python(start_watchdog, fn, max_inflight="1")
    slow = asyncio.create_task(harness.client.get("/"))
    await asyncio.sleep(0.1)
    refused = await harness.client.get("/")
    assert refused.status == 429
    assert refused.headers["X-OpenFaaS-Internal"] == "faas-middleware"
    assert await refused.text() == "Concurrent request limit exceeded. Max concurrent requests: 1\n"
    assert (await harness.client.get("/_/ready")).status == 429
    assert (await slow).status == 200
    assert (await harness.client.get("/_/ready")).status == 200


async def test_function_reload_serves_an_edited_handler_and_keeps_the_last_good_one(
    start_watchdog, tmp_path: Path
) -> None:
    fn = write_handler(tmp_path / "fn", "def handle(event, context):\n    return 'v1'\n")
    helper = f"helper_{secrets.token_hex(4)}"  # module names are per process; tests share one
    (fn / f"{helper}.py").write_text("WORD = 'one'\n")
    harness = await start_python(start_watchdog, fn, function_reload="true")
    assert await (await harness.client.get("/")).text() == "v1"

    async def answers(expected: str) -> None:
        async with asyncio.timeout(3):
            while await (await harness.client.get("/")).text() != expected:
                await asyncio.sleep(0.05)

    (fn / "handler.py").write_text(f"import {helper}\n\nasync def handle(event, context):\n    return {helper}.WORD\n")
    await answers("one")
    (fn / f"{helper}.py").write_text("WORD = 'two'\n")  # a module of the function, not only handler.py
    await answers("two")
    (fn / "handler.py").write_text("def handle(event, context)\n    return 'broken'\n")
    await asyncio.sleep(0.8)  # a few polls: the broken version is refused, the last good one serves
    assert await (await harness.client.get("/")).text() == "two"
    (fn / "handler.py").write_text("def handle(req):\n    return 'fixed ' + req\n")
    await answers("fixed ")


async def test_function_reload_sees_an_edit_made_before_the_watcher_first_looked(tmp_path: Path) -> None:
    """The baseline is the files as loaded: an edit right after loading is never mistaken for the baseline."""
    fn = write_handler(tmp_path / "fn", "def run():\n    return 1\n")
    executor = PythonExecutor(
        WatchdogConfig.from_env({"mode": "python", "function_path": str(fn), "function_reload": "1"})
    )
    (fn / "handler.py").write_text("def run():\n    return 'edited'\n")  # before start(), before any poll
    await executor.start()
    try:
        async with asyncio.timeout(3):
            while executor._handler.function() != "edited":
                await asyncio.sleep(0.05)
    finally:
        await executor.close()
