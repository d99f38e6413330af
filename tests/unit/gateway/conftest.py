"""The gateway against real upstream servers on loopback and a small fake provider, all in the test's loop."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.app import create_app, lean_routes
from gateway.config import GatewayConfig
from netconf.hosts import Replica, write_hosts
from servicekit.auth import Credentials
from tests.helpers import ROOT, free_port
from tests.lean_support import LeanTestServer
from tests.nats_support import MISSING_REASON, NatsServer, nats_server_installed, running_nats_server
from tests.queue_support import QueueMaker

USER = "admin"
PASSWORD = "s3cret-pw"
CREDENTIALS = Credentials(USER, PASSWORD)
AUTH = {"Authorization": CREDENTIALS.authorization}
BRIDGE = IPv4Address("10.62.0.1")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Gateway tests run on uvloop, the gateway's loop (servicekit's server tests run on the stdlib loop too)."""
    return {"uvloop": uvloop.new_event_loop}


def gateway_state(state_dir: Path, hosts: dict[str, list[str]] | None = None) -> None:
    """A state dir for ``python -m gateway``: the admin secret (USER, PASSWORD) and, when given, a hosts file."""
    secrets = state_dir / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "basic-auth-user").write_text(USER + "\n")
    (secrets / "basic-auth-password").write_text(PASSWORD + "\n")
    if hosts is not None:
        set_hosts(state_dir / "hosts", hosts)


def gateway_env(state_dir: Path, port: int, **settings: str) -> dict[str, str]:
    """The environment of ``python -m gateway`` on ``state_dir``, listening on 127.0.0.1:``port``; ``settings`` are
    more variables (PYFAASD_...). The provider is an address nobody answers unless PYFAASD_PROVIDER_URL is given:
    annotations take their defaults."""
    return {
        **os.environ,
        "PYFAASD_GATEWAY_ADDR": f"127.0.0.1:{port}",
        "PYFAASD_STATE_DIR": str(state_dir),
        "PYFAASD_PROVIDER_URL": f"http://127.0.0.1:{free_port()}",
        "PYTHONPATH": str(ROOT),
        **settings,
    }


def set_hosts(path: Path, functions: dict[str, list[str]]) -> None:
    """Write the hosts file as the provider does: ``{"name.namespace": [ip, ...]}``."""
    replicas = []
    for key, ips in functions.items():
        name, _, namespace = key.rpartition(".")
        replicas += [Replica(name, namespace, IPv4Address(ip)) for ip in ips]
    write_hosts(path, BRIDGE, replicas)


# -- a function replica ------------------------------------------------------------------------------------


@dataclass
class Upstream:
    """Controls shared by the replica handlers of one test."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # /flaky/{key}: answers so far, per key


def replica_app(tag: str, control: Upstream) -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = {
            "replica": tag,
            "method": request.method,
            "target": request.raw_path,
            "headers": {k: v for k, v in request.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "length": len(body),
        }
        control.seen.append(seen)
        return web.json_response(seen, headers={"X-Replica": tag, "Connection": "keep-alive"})

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}", headers={"X-Replica": tag})

    async def flaky(request: web.Request) -> web.Response:
        """``/flaky/{key}?fail=N&code=C[&after=S]``: C (with ``Retry-After: S``) for the first N calls of a key,
        then 200 with the number of the call."""
        key = request.match_info["key"]
        count = control.failures[key] = control.failures.get(key, 0) + 1
        if count <= int(request.query.get("fail", "1")):
            code = int(request.query.get("code", "500"))
            headers = {"Retry-After": request.query["after"]} if "after" in request.query else {}
            return web.Response(status=code, text=f"failure {count}", headers=headers)
        return web.Response(text=f"success on call {count}", headers={"X-Replica": tag})

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    async def held(request: web.Request) -> web.StreamResponse:
        """Sends "first\\n", waits until the test releases it, then "second\\n" (chunked)."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"first\n")
        await control.release.wait()
        await response.write(b"second\n")
        await response.write_eof()
        return response

    async def sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(3):
            await response.write(f"data: {i}\n\n".encode())
            await control.release.wait()
            control.release.clear()
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "1")))
        return web.Response(text="slow done")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.query["n"]))

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            if message.data == "headers":
                await socket.send_str(json.dumps(dict(request.headers)))
            else:
                await socket.send_str(f"{tag} echo: {message.data}")
        return socket

    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/redirect", redirect)
    app.router.add_route("*", "/flaky/{key}", flaky)
    app.router.add_get("/held", held)
    app.router.add_get("/sse", sse)
    app.router.add_route("*", "/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_get("/ws", ws)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


# -- the fake provider ---------------------------------------------------------------------------------------


@dataclass
class FakeProvider:
    """faas-provider's API as far as the gateway uses it; records every request."""

    functions: dict[str, dict[str, Any]] = field(default_factory=dict)  # "name.ns" → FunctionStatus
    calls: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    # The gateway's own background listings (the cron scheduler reads every namespace's functions every few
    # seconds), kept apart so that ``calls`` holds what the requests of a test caused.
    listings: list[str] = field(default_factory=list)
    on_scale: Callable[[str, str, int], Awaitable[None]] | None = None
    logs: list[str] = field(default_factory=list)
    logs_status: int = 200
    log_gate: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    cpu_millis: float = 0.0

    def calls_to(self, method: str, prefix: str) -> list[tuple[str, str, dict[str, str], bytes]]:
        return [c for c in self.calls if c[0] == method and c[1].startswith(prefix)]

    def app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            body = await request.read()
            own = request.headers.get("User-Agent", "").startswith("pyfaasd-gateway/")
            if own and request.method == "GET" and request.path in ("/system/namespaces", "/system/functions"):
                self.listings.append(request.raw_path)
            else:
                self.calls.append((request.method, request.raw_path, dict(request.headers), body))
            if request.path != "/healthz" and request.headers.get("Authorization") != CREDENTIALS.authorization:
                return web.Response(status=401, text="invalid credentials")
            response: web.StreamResponse = await handler(request)
            return response

        async def list_functions(request: web.Request) -> web.Response:
            namespace = request.query.get("namespace", "openfaas-fn")
            items = [f for f in self.functions.values() if f.get("namespace", "openfaas-fn") == namespace]
            return web.Response(text=json.dumps(items), content_type="application/json")

        async def namespaces(request: web.Request) -> web.Response:
            names = sorted({"openfaas-fn", *(f.get("namespace", "openfaas-fn") for f in self.functions.values())})
            return web.json_response(names)

        async def status(request: web.Request) -> web.Response:
            namespace = request.query.get("namespace", "openfaas-fn")
            key = f"{request.match_info['name']}.{namespace}"
            known = {"openfaas-fn", *(k.rpartition(".")[2] for k in self.functions)}
            if namespace not in known:  # as the provider answers an unknown namespace
                return web.Response(status=400, text=f"namespace {namespace} does not exist in /var/lib/...")
            if key not in self.functions:
                return web.Response(status=404)
            if request.query.get("usage") == "1":
                return web.json_response({**self.functions[key], "usage": {"cpu": self.cpu_millis}})
            return web.json_response(self.functions[key])

        async def scale(request: web.Request) -> web.Response:
            body = await request.json()
            key = f"{body['serviceName']}.{body['namespace']}"
            if key not in self.functions:
                return web.Response(status=404, text=f"function: {key} not found")
            self.functions[key]["replicas"] = body["replicas"]
            if self.on_scale is not None:
                await self.on_scale(body["serviceName"], body["namespace"], body["replicas"])
            return web.Response()

        async def info(request: web.Request) -> web.Response:
            return web.json_response(
                {"provider": "pyfaasd", "orchestration": "docker", "version": {"sha": "abc123", "release": "0.1.0"}}
            )

        async def logs(request: web.Request) -> web.StreamResponse:
            if self.logs_status != 200:
                return web.Response(status=self.logs_status, text="no logs here")
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
            for i, line in enumerate(self.logs):
                await response.write(line.encode() + b"\n")
                if i == 0:
                    await self.log_gate.wait()
            await response.write_eof()
            return response

        async def healthz(request: web.Request) -> web.Response:
            return web.Response(text="OK")

        async def echo(request: web.Request) -> web.Response:
            return web.json_response(
                {"method": request.method, "target": request.raw_path, "body": (await request.read()).decode()},
                status=201 if request.method == "POST" else 200,
                headers={"X-Provider": "fake"},
            )

        app = web.Application(middlewares=[record])
        app.router.add_get("/system/namespaces", namespaces)
        app.router.add_get("/system/functions", list_functions)
        app.router.add_get("/system/function/{name}", status)
        app.router.add_post("/system/scale-function/{name}", scale)
        app.router.add_get("/system/info", info)
        app.router.add_get("/system/logs", logs)
        app.router.add_get("/healthz", healthz)
        app.router.add_route("*", "/system/{tail:.*}", echo)
        return app


@dataclass
class Stack:
    client: TestClient  # type: ignore[type-arg]
    app: web.Application
    config: GatewayConfig
    provider: FakeProvider
    upstream: Upstream
    hosts: Path
    function_port: int

    def set_hosts(self, functions: dict[str, list[str]]) -> None:
        set_hosts(self.hosts, functions)


StartStack = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def start_stack(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> AsyncIterator[StartStack]:
    """Start replicas (``replicas`` = loopback IPs, all on one function port), the fake provider and a gateway
    listening as gateway/server.py makes it: the lean server in front of the app (what is not a hot path is the
    app's, handed over; servicekit's own tests cover aiohttp's listener alone)."""

    async def start(
        replicas: tuple[str, ...] = ("127.0.0.1",),
        functions: dict[str, list[str]] | None = None,
        provider: FakeProvider | None = None,
        autoscale: bool = False,
        **env: str,
    ) -> Stack:
        control = Upstream()
        function_port = free_port()
        for ip in replicas:
            server = TestServer(replica_app(ip, control), host=ip, port=function_port)
            await server.start_server()
            servers.append(server)
        fake = provider or FakeProvider()
        provider_server = await aiohttp_server(fake.app())
        fake.url = f"http://127.0.0.1:{provider_server.port}"
        hosts = tmp_path / "hosts"
        set_hosts(hosts, functions if functions is not None else {"echo.openfaas-fn": list(replicas)})
        config = GatewayConfig.from_env(
            {
                "PYFAASD_STATE_DIR": str(tmp_path),
                "PYFAASD_PROVIDER_URL": fake.url,
                "PYFAASD_FUNCTION_PORT": str(function_port),
                "PYFAASD_ACCESS_LOG": "false",
                **env,
            }
        )
        app = create_app(config, credentials=CREDENTIALS, autoscale=autoscale)
        server = LeanTestServer(app, lean_routes(app))
        client: TestClient[web.Request, None] = await aiohttp_client(server)
        clients.append(client)
        return Stack(client, app, config, fake, control, hosts, function_port)

    servers: list[TestServer] = []
    clients: list[TestClient] = []  # type: ignore[type-arg]
    yield start
    for client in clients:  # the gateway first, while its replicas can still answer a websocket close
        await client.close()
    for server in servers:
        await server.close()


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One JetStream server per test module (each test uses its own bucket)."""
    with running_nats_server(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(params=["sqlite", "jetstream"])
async def queues(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueMaker]:
    """The async queue's contract on both implementations; the JetStream one on a real nats-server."""
    url = None
    if request.param == "jetstream":
        if not nats_server_installed():
            pytest.skip(MISSING_REASON)
        url = request.getfixturevalue("nats_server").url
    maker = QueueMaker(request.param, tmp_path, url)
    yield maker
    await maker.close()
