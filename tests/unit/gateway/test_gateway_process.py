"""``python -m gateway`` as a real process with two workers: both serve, metrics add up, SIGTERM drains."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from netconf.routes import Route, RouteKind, write_routes
from tests.helpers import free_port, wait_http_ok
from tests.tls_support import Certificate, LoopbackResolver, client_context, make_certificate, peer_serial
from tests.unit.gateway.conftest import FakeProvider, gateway_env, gateway_state


def json_objects(text: str) -> list[dict[str, object]]:
    """Every JSON object in the output. Lines of two processes can touch: with PYTHONUNBUFFERED, structlog's
    PrintLogger writes a message and its newline in two writes, so another worker's line may come between."""
    decoder = json.JSONDecoder()
    objects = []
    position = 0
    while (start := text.find("{", position)) >= 0:
        try:
            value, position = decoder.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        objects.append(value)
    return objects


def notify_socket(path: Path) -> socket.socket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    return sock


async def next_notification(sock: socket.socket, timeout: float = 10.0) -> str:
    async with asyncio.timeout(timeout):
        return (await asyncio.get_running_loop().sock_recv(sock, 4096)).decode()


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


@dataclass
class Replica:
    port: int
    started: asyncio.Event


@pytest.fixture
async def replica() -> AsyncIterator[Replica]:
    """A function replica on 127.0.0.1 whose /slow handler tells the test when it started."""
    started = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/slow":
            started.set()
            await asyncio.sleep(1.0)
            return web.Response(text="slow done")
        return web.Response(text="fast")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        assert server.port is not None
        yield Replica(server.port, started)
    finally:
        await server.close()


async def test_two_workers_serve_add_up_metrics_and_drain_on_sigterm(tmp_path: Path, replica: Replica) -> None:
    gateway_state(tmp_path, {"echo.openfaas-fn": ["127.0.0.1"]})
    port = free_port()
    env = gateway_env(
        tmp_path,
        port,
        PYFAASD_FUNCTION_PORT=str(replica.port),
        PYFAASD_GATEWAY_WORKERS="2",
        NOTIFY_SOCKET=str(tmp_path / "notify"),
    )
    notifications = notify_socket(tmp_path / "notify")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        await wait_http_ok(port, "/_/health", timeout=20)
        assert await next_notification(notifications) == "READY=1"  # from the supervisor, once both listen
        workers = children(proc.pid)
        assert len(workers) == 2
        # New connections each: SO_REUSEPORT spreads them over both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(40):
                async with session.get(f"http://127.0.0.1:{port}/function/echo") as response:
                    assert (response.status, await response.text()) == (200, "fast")
            for _ in range(6):  # whichever worker answers, it shows the total of both
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    text = await response.text()
                assert 'gateway_function_invocation_total{function_name="echo.openfaas-fn",code="200"} 40' in text
            slow = asyncio.create_task(session.get(f"http://127.0.0.1:{port}/function/echo/slow"))
            async with asyncio.timeout(5):
                await replica.started.wait()
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                response = await slow
                assert (response.status, await response.text()) == (200, "slow done")
                assert await proc.wait() == 0
        assert await next_notification(notifications) == "STOPPING=1"
    finally:
        notifications.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = json_objects((await proc.stdout.read()).decode())  # type: ignore[union-attr]
    served_by = {line.get("worker") for line in lines if line.get("event") == "request"}
    assert served_by == {0, 1}
    assert sum(1 for line in lines if line.get("event") == "request") == 41
    assert any(line.get("event") == "draining" for line in lines)


async def test_one_worker_tells_systemd_when_it_listens_and_when_it_stops(tmp_path: Path, replica: Replica) -> None:
    gateway_state(tmp_path)
    port = free_port()
    env = gateway_env(tmp_path, port, NOTIFY_SOCKET=str(tmp_path / "notify"))
    notifications = notify_socket(tmp_path / "notify")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        assert await next_notification(notifications, timeout=20) == "READY=1"
        await wait_http_ok(port, "/_/health", timeout=5)  # READY=1 came once it listens
        proc.send_signal(signal.SIGTERM)
        assert await next_notification(notifications) == "STOPPING=1"
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        notifications.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_with_two_workers_async_calls_are_accepted_by_both_and_dispatched_by_one(
    tmp_path: Path, replica: Replica
) -> None:
    gateway_state(tmp_path, {"echo.openfaas-fn": ["127.0.0.1"]})
    got: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(request.headers["X-Call-Id"])
        return web.Response()

    receiver_app = web.Application()
    receiver_app.router.add_post("/", receive)
    receiver = TestServer(receiver_app, host="127.0.0.1", port=free_port())
    await receiver.start_server()
    port = free_port()
    env = gateway_env(tmp_path, port, PYFAASD_FUNCTION_PORT=str(replica.port), PYFAASD_GATEWAY_WORKERS="2")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    ids = [f"w{i}" for i in range(40)]
    try:
        await wait_http_ok(port, "/_/health", timeout=20)
        connector = aiohttp.TCPConnector(force_close=True)  # new connections: both workers accept
        async with aiohttp.ClientSession(connector=connector) as session:
            for call_id in ids:
                headers = {"X-Call-Id": call_id, "X-Callback-Url": f"http://127.0.0.1:{receiver.port}/"}
                async with session.post(f"http://127.0.0.1:{port}/async-function/echo", headers=headers) as response:
                    assert response.status == 202
        async with asyncio.timeout(15):
            while len(got) < len(ids):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # room for a second delivery, were there one
        assert sorted(got) == sorted(ids)  # each exactly once
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
    finally:
        await receiver.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = json_objects((await proc.stdout.read()).decode())  # type: ignore[union-attr]
    assert [line.get("worker") for line in lines if line.get("event") == "async_dispatcher_started"] in ([0], [1])
    assert sum(1 for line in lines if line.get("event") == "async_dispatcher_standby") == 1


async def test_with_two_workers_one_process_autoscales_from_the_shared_counters(tmp_path: Path) -> None:
    provider = FakeProvider()
    provider.functions["idle.openfaas-fn"] = {
        "name": "idle",
        "namespace": "openfaas-fn",
        "image": "img",
        "replicas": 1,
        "labels": {"com.openfaas.scale.zero": "true", "com.openfaas.scale.zero-duration": "1s"},
    }
    server = TestServer(provider.app(), host="127.0.0.1", port=free_port())
    await server.start_server()
    gateway_state(tmp_path, {"idle.openfaas-fn": ["127.0.0.1"]})
    port = free_port()
    env = gateway_env(
        tmp_path,
        port,
        PYFAASD_PROVIDER_URL=f"http://127.0.0.1:{server.port}",
        PYFAASD_GATEWAY_WORKERS="2",
        PYFAASD_AUTOSCALE_INTERVAL="100ms",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        await wait_http_ok(port, "/_/health", timeout=20)
        async with asyncio.timeout(10):
            while not provider.calls_to("POST", "/system/scale-function/idle"):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a second deciding process would have called by now too
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(4):  # whichever worker answers, it shows the deciding process's value
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    text = await response.text()
                assert 'gateway_service_desired_replicas{function_name="idle.openfaas-fn"} 0' in text
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await server.close()
    scale_calls = provider.calls_to("POST", "/system/scale-function/")
    assert [c[3] for c in scale_calls] == [b'{"serviceName":"idle","namespace":"openfaas-fn","replicas":0}']
    lines = json_objects((await proc.stdout.read()).decode())  # type: ignore[union-attr]
    starts = [line for line in lines if line.get("event") == "autoscaler_started"]
    assert [line.get("worker") for line in starts] == [0]


async def test_two_workers_reload_certificates_on_sighup_under_load_without_losing_a_request(
    tmp_path: Path, replica: Replica
) -> None:
    gateway_state(tmp_path, {"echo.openfaas-fn": ["127.0.0.1"]})
    write_routes(tmp_path / "routes", [Route(RouteKind.DOMAIN, "files.example.com", "echo.openfaas-fn")])
    live = tmp_path / "certs" / "files.example.com"
    versions = [
        make_certificate(tmp_path / f"v{serial}.crt", tmp_path / f"v{serial}.key", "files.example.com", serial=serial)
        for serial in (1, 2, 3, 4)
    ]
    live.mkdir(parents=True)

    def install(version: Certificate) -> None:
        for source, target in ((version.cert, "fullchain.pem"), (version.key, "privkey.pem")):
            (live / f".{target}").write_bytes(source.read_bytes())
            (live / f".{target}").replace(live / target)  # as certbot swaps its symlinks: never a torn file

    install(versions[0])
    port, tls_port = free_port(), free_port()
    env = gateway_env(
        tmp_path,
        port,
        PYFAASD_TLS_ADDR=f"127.0.0.1:{tls_port}",
        PYFAASD_TLS_DIR=str(tmp_path / "certs"),
        PYFAASD_FUNCTION_PORT=str(replica.port),
        PYFAASD_GATEWAY_WORKERS="2",
        PYFAASD_ACCESS_LOG="false",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    trusted = client_context(*(v.cert for v in versions))
    url = f"https://files.example.com:{tls_port}/download/x"
    results: list[int | str] = []
    loading = True

    async def client(keep_alive: bool) -> None:
        connector = aiohttp.TCPConnector(ssl=trusted, resolver=LoopbackResolver(), force_close=not keep_alive)
        async with aiohttp.ClientSession(connector=connector) as session:
            while loading:
                try:
                    async with session.get(url) as response:
                        await response.read()
                        results.append(response.status)
                except aiohttp.ClientError as exc:
                    results.append(repr(exc))

    try:
        await wait_http_ok(port, "/_/health", timeout=20)
        await asyncio.sleep(0.5)  # both workers listen (READY is tested above)
        load = [asyncio.create_task(client(keep_alive=i % 2 == 0)) for i in range(6)]
        for version in versions[1:]:
            await asyncio.sleep(0.4)
            install(version)
            proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.4)
        loading = False
        await asyncio.gather(*load)
        shown = {await asyncio.to_thread(peer_serial, trusted, tls_port, "files.example.com") for _ in range(12)}
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    failures = [r for r in results if r != 200]
    assert failures == []
    assert len(results) > 100
    assert shown == {("files.example.com", 4)}  # every new handshake, whichever worker: the last files
    lines = json_objects((await proc.stdout.read()).decode())  # type: ignore[union-attr]
    reloads = [str(line.get("worker")) for line in lines if line.get("event") == "tls_reloaded"]
    assert sorted(reloads) == ["0", "0", "0", "1", "1", "1"]  # the supervisor passed each SIGHUP to both workers
