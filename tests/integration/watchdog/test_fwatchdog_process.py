"""The real fwatchdog process: exit codes, the SIGTERM drain, several workers sharing the port."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from servicekit import defaults
from tests.helpers import free_port, http_mode_env, wait_http_ok
from tests.slow_clients import HEAD, closed, connection, on_time, trickle


def start_fwatchdog(env: dict[str, str], tmp_path: Path) -> subprocess.Popen[bytes]:
    full = {**os.environ, "TMPDIR": str(tmp_path), "log_format": "json", **env}
    with open(tmp_path / "fwatchdog.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "watchdog"], env=full, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"mode": "nope"}, "mode"),
        (
            {"mode": "http", "fprocess": "x", "upstream_url": "http://127.0.0.1:1", "exec_timeout": "soon"},
            "exec_timeout",
        ),
        ({"mode": "streaming"}, "fprocess"),
    ],
)
def test_a_bad_variable_exits_2_naming_it(tmp_path: Path, env: dict[str, str], variable: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "watchdog"], env={**os.environ, **env}, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert f"configuration error: {variable}: " in result.stderr.decode()


def test_a_handler_that_does_not_load_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "watchdog"],
        env={**os.environ, "mode": "python", "function_path": str(tmp_path)},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "no handler.py" in result.stderr.decode()


async def test_sigterm_drains_in_flight_requests_then_stops_the_function_process(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    env = http_mode_env(port=str(port), metrics_port="0", healthcheck_interval="1s", write_timeout="10s")
    proc = start_fwatchdog(env, tmp_path)
    processes.append(proc)
    await wait_http_ok(port)
    assert (tmp_path / ".lock").exists()
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/slow?s=2"))
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with session.get(f"http://127.0.0.1:{port}/_/health") as health:
            assert health.status == 503  # draining: unhealthy, but still serving
        assert not (tmp_path / ".lock").exists()
        response = await in_flight
        assert response.status == 200
        assert await response.text() == "slow done"
    code = await asyncio.to_thread(proc.wait, 20)
    output = (tmp_path / "fwatchdog.log").read_text()
    assert code == 0, output
    assert "function_process_stopped" in output
    # The function process went after the drain, not before: the slow request above got its answer.
    upstream_port = env["upstream_url"].rsplit(":", 1)[1]
    assert subprocess.run(["ss", "-Hltn", f"sport = :{upstream_port}"], capture_output=True, text=True).stdout == ""


async def test_workers_share_the_port_readiness_and_metrics(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    function = tmp_path / "fn"
    function.mkdir()
    (function / "handler.py").write_text(
        "import os, time\ndef handle(event, context):\n    time.sleep(0.05)\n    return str(os.getpid())\n"
    )
    port, metrics_port = free_port(), free_port()
    proc = start_fwatchdog(
        {
            "mode": "python",
            "function_path": str(function),
            "port": str(port),
            "metrics_port": str(metrics_port),
            "workers": "2",
            "healthcheck_interval": "0.2s",
            "log_requests": "false",
        },
        tmp_path,
    )
    processes.append(proc)
    await wait_http_ok(port)
    pids: set[str] = set()
    connector = aiohttp.TCPConnector(force_close=True)  # new connections, so the kernel spreads them
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 200
                pids.add(await response.text())

        deadline = time.monotonic() + 20
        total = 0
        while len(pids) < 2 and time.monotonic() < deadline:
            await asyncio.gather(*(one() for _ in range(8)))
            total += 8
        assert len(pids) == 2, "both workers answered"
        assert str(proc.pid) not in pids  # the first process only supervises
        async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            text = await response.text()
    assert f'http_requests_total{{code="200",method="GET"}} {total}' in text
    assert not any(map(loads_aiohttp, watchdog_processes(proc.pid)))  # python mode: the lean server alone
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0


def test_run_healthcheck_reports_the_lock_file(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "mode": "static"}
    cmd = [sys.executable, "-m", "watchdog", "--run-healthcheck"]
    assert subprocess.run(cmd, env=env, check=False).returncode == 1
    (tmp_path / ".lock").touch()
    assert subprocess.run(cmd, env=env, check=False).returncode == 0


async def test_a_slow_request_head_is_closed_after_the_header_timeout_while_requests_pass(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Other functions can reach a watchdog: it has the gateway's client limits at their defaults (10 s, 75 s)."""
    port = free_port()
    proc = start_fwatchdog(http_mode_env(port=str(port), metrics_port="0"), tmp_path)
    processes.append(proc)
    await wait_http_ok(port)
    async with connection(port) as (reader, writer), aiohttp.ClientSession() as session:
        started = time.monotonic()
        sender = asyncio.create_task(trickle(writer, HEAD * 10, every_s=0.5))
        for _ in range(5):
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 200
        assert await closed(reader) == b""
        assert on_time(time.monotonic() - started, defaults.HEADER_TIMEOUT_S)
        sender.cancel()


def watchdog_processes(pid: int) -> list[int]:
    """The watchdog's process and its forked workers (not the function process: another command line)."""
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children if Path(f"/proc/{child}/cmdline").read_bytes() == command)]


def loads_aiohttp(pid: int) -> bool:
    """Whether a process has aiohttp loaded: its compiled parser is mapped once ``import aiohttp`` ran."""
    return "/aiohttp/" in Path(f"/proc/{pid}/maps").read_text()


async def test_http_mode_serves_calls_websockets_and_metrics_without_loading_aiohttp(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, metrics_port = free_port(), free_port()
    proc = start_fwatchdog(http_mode_env(port=str(port), metrics_port=str(metrics_port), workers="2"), tmp_path)
    processes.append(proc)
    await wait_http_ok(port)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/say", data=b"hi") as answer:
            assert answer.status == 200
        async with session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:  # through servicekit.tunnel
            await ws.send_str("hi")
            assert (await ws.receive(timeout=5)).data == "echo: hi"
        async with session.get(f"http://127.0.0.1:{port}/_/ready") as ready:
            assert ready.status == 200
        async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as metrics:
            assert 'http_requests_total{code="200",method="POST"} 1' in await metrics.text()
    serving = watchdog_processes(proc.pid)
    assert len(serving) == 3  # the first process (metrics, the function process) and two workers
    assert not any(map(loads_aiohttp, serving)), "http mode loaded aiohttp (servicekit.lean_server serves alone)"


async def test_static_mode_still_serves_on_aiohttp(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>hi</p>")
    port = free_port()
    proc = start_fwatchdog(
        {"mode": "static", "static_path": str(site), "port": str(port), "metrics_port": "0"}, tmp_path
    )
    processes.append(proc)
    await wait_http_ok(port)
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as page:
        assert await page.text() == "<p>hi</p>"
    assert loads_aiohttp(proc.pid)  # (what the check above looks for is there when aiohttp is loaded)
