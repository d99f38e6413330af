"""HTTPS on the gateway (INTERFACES.md §8): certificates made by the test, SNI picks each domain's, the routed
domain over HTTPS (curl --resolve), the plain listener's 308, SIGHUP reloads, and bad files refused or kept."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from gateway.config import GatewayConfig
from gateway.server import serve
from gateway.tls import Certificates, TlsError
from netconf.routes import Route, RouteKind, write_routes
from servicekit.settings import SettingError
from tests.helpers import free_port
from tests.tls_support import Certificate, LoopbackResolver, client_context, make_certificate, peer_serial
from tests.unit.gateway.conftest import CREDENTIALS, FakeProvider, Upstream, replica_app, set_hosts

FILES = "files.example.com"
BLOG = "blog.example.com"


@dataclass
class TlsGateway:
    config: GatewayConfig
    plain: int
    secure: int
    default: Certificate
    files: Certificate
    blog: Certificate


async def start_gateway(tmp_path: Path, aiohttp_server: AiohttpServer, **env: str) -> AsyncIterator[TlsGateway]:
    certs = tmp_path / "certs"
    files = make_certificate(certs / FILES / "fullchain.pem", certs / FILES / "privkey.pem", FILES, serial=11)
    blog = make_certificate(certs / f"{BLOG}.crt", certs / f"{BLOG}.key", BLOG, serial=21)
    default = make_certificate(tmp_path / "gateway.crt", tmp_path / "gateway.key", "gateway.local", serial=1)
    function_port = free_port()
    replica = TestServer(replica_app("127.0.0.1", Upstream()), host="127.0.0.1", port=function_port)
    await replica.start_server()
    provider = await aiohttp_server(FakeProvider().app())
    set_hosts(tmp_path / "hosts", {"echo.openfaas-fn": ["127.0.0.1"]})
    write_routes(
        tmp_path / "routes",
        [Route(RouteKind.DOMAIN, FILES, "echo.openfaas-fn"), Route(RouteKind.DOMAIN, BLOG, "echo.openfaas-fn")],
    )
    plain, secure = free_port(), free_port()
    config = GatewayConfig.from_env(
        {
            "PYFAASD_GATEWAY_ADDR": f"127.0.0.1:{plain}",
            "PYFAASD_TLS_ADDR": f"127.0.0.1:{secure}",
            "PYFAASD_TLS_CERT": str(default.cert),
            "PYFAASD_TLS_KEY": str(default.key),
            "PYFAASD_TLS_DIR": str(certs),
            "PYFAASD_STATE_DIR": str(tmp_path),
            "PYFAASD_PROVIDER_URL": f"http://127.0.0.1:{provider.port}",
            "PYFAASD_FUNCTION_PORT": str(function_port),
            "PYFAASD_ACCESS_LOG": "false",
            **env,
        }
    )
    stop = asyncio.Event()
    listening = asyncio.Event()
    task = asyncio.create_task(serve(config, stop=stop, credentials=CREDENTIALS, ready=listening.set))
    try:
        async with asyncio.timeout(10):
            await listening.wait()
        yield TlsGateway(config, plain, secure, default, files, blog)
    finally:
        stop.set()
        await task
        await replica.close()


@pytest.fixture
async def gateway(tmp_path: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[TlsGateway]:
    async for made in start_gateway(tmp_path, aiohttp_server):
        yield made


@pytest.fixture
async def redirecting(tmp_path: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[TlsGateway]:
    async for made in start_gateway(tmp_path, aiohttp_server, PYFAASD_HTTP_REDIRECT="true"):
        yield made


async def curl(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "10", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return proc.returncode, out.decode()


async def test_sni_picks_each_domains_certificate_and_the_default_otherwise(gateway: TlsGateway) -> None:
    trusted = client_context(gateway.files.cert, gateway.blog.cert, gateway.default.cert)
    seen = {
        name: await asyncio.to_thread(peer_serial, trusted, gateway.secure, name)
        for name in (FILES, BLOG, "gateway.local")
    }
    assert seen == {FILES: (FILES, 11), BLOG: (BLOG, 21), "gateway.local": ("gateway.local", 1)}
    assert await asyncio.to_thread(peer_serial, trusted, gateway.secure, None) == ("gateway.local", 1)


async def test_curl_reaches_the_function_at_its_domain_over_https(gateway: TlsGateway) -> None:
    port = gateway.secure
    _, root = await curl("--resolve", f"{FILES}:{port}:127.0.0.1", "--cacert", str(gateway.files.cert),
                         f"https://{FILES}:{port}/")  # fmt: skip
    assert json.loads(root)["target"] == "/"
    _, body = await curl("--resolve", f"{FILES}:{port}:127.0.0.1", "--cacert", str(gateway.files.cert),
                         f"https://{FILES}:{port}/download/x")  # fmt: skip
    seen = json.loads(body)
    assert seen["target"] == "/download/x"
    assert seen["headers"]["X-Forwarded-Proto"] == "https"
    assert seen["headers"]["X-Forwarded-Host"] == f"{FILES}:{port}"
    assert "X-Forwarded-Prefix" not in seen["headers"]


async def test_without_the_redirect_setting_plain_http_serves_the_domain_too(gateway: TlsGateway) -> None:
    _, body = await curl("--resolve", f"{FILES}:{gateway.plain}:127.0.0.1", f"http://{FILES}:{gateway.plain}/x")
    assert json.loads(body)["headers"]["X-Forwarded-Proto"] == "http"


async def test_the_redirect_setting_sends_plain_http_for_a_domain_to_https(redirecting: TlsGateway) -> None:
    plain, secure = redirecting.plain, redirecting.secure
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"http://127.0.0.1:{plain}/download/x?y=1", headers={"Host": f"{FILES}:{plain}"}, allow_redirects=False
        ) as response:
            assert response.status == 308
            assert response.headers["Location"] == f"https://{FILES}:{secure}/download/x?y=1"
        async with session.get(f"http://127.0.0.1:{plain}/function/echo/x") as response:
            assert response.status == 200  # the gateway's own paths on other hosts stay plain
    _, body = await curl("-L", "--resolve", f"{FILES}:{plain}:127.0.0.1", "--resolve", f"{FILES}:{secure}:127.0.0.1",
                         "--cacert", str(redirecting.files.cert), f"http://{FILES}:{plain}/page")  # fmt: skip
    assert json.loads(body)["target"] == "/page"


async def test_a_client_that_never_shakes_hands_is_closed_after_the_header_timeout(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    async for gateway in start_gateway(tmp_path, aiohttp_server, PYFAASD_HEADER_TIMEOUT="300ms"):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.secure)
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by the gateway, no handshake byte sent
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()


async def test_sighup_reloads_the_certificates_and_an_open_connection_keeps_working(
    gateway: TlsGateway, tmp_path: Path
) -> None:
    kept = tmp_path / "old-files.pem"
    kept.write_text(gateway.files.cert.read_text())
    url = f"https://{FILES}:{gateway.secure}/kept"
    connector = aiohttp.TCPConnector(limit=1, ssl=client_context(kept), resolver=LoopbackResolver())
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url) as response:  # opens the one connection, with the old certificate
            assert response.status == 200
        make_certificate(gateway.files.cert, gateway.files.key, FILES, serial=12)
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.1)
        async with session.get(url) as response:  # the same connection: it would fail to verify a new one
            assert response.status == 200
    trusted = client_context(gateway.files.cert)
    assert await asyncio.to_thread(peer_serial, trusted, gateway.secure, FILES) == (FILES, 12)


async def test_a_reload_whose_files_do_not_load_keeps_the_certificates_in_use(gateway: TlsGateway) -> None:
    gateway.files.key.write_text("not a key\n")
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.1)
    trusted = client_context(gateway.files.cert, gateway.default.cert)
    assert await asyncio.to_thread(peer_serial, trusted, gateway.secure, FILES) == (FILES, 11)


def test_a_certificate_that_does_not_load_is_refused_at_start(tmp_path: Path) -> None:
    good = make_certificate(tmp_path / "c.pem", tmp_path / "k.pem", "gateway.local")
    (tmp_path / "bad.pem").write_text("junk\n")
    with pytest.raises(TlsError, match=r"bad\.pem"):
        Certificates(tmp_path / "bad.pem", good.key, None)
    with pytest.raises(TlsError, match="cannot read the certificate directory"):
        Certificates(None, None, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TlsError, match="holds none"):
        Certificates(None, None, tmp_path / "empty")


def test_a_directory_alone_serves_its_first_domain_by_default(tmp_path: Path) -> None:
    make_certificate(tmp_path / "b.example.com.crt", tmp_path / "b.example.com.key", "b.example.com")
    make_certificate(
        tmp_path / "a.example.com" / "fullchain.pem", tmp_path / "a.example.com" / "privkey.pem", "a.example.com"
    )
    assert Certificates(None, None, tmp_path).domains == ["a.example.com", "b.example.com"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PYFAASD_TLS_CERT": "/c.pem"}, "go together"),
        ({"PYFAASD_TLS_KEY": "/k.pem"}, "go together"),
        ({"PYFAASD_HTTP_REDIRECT": "true"}, "needs HTTPS"),
    ],
)
def test_tls_settings_that_cannot_work_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingError, match=message):
        GatewayConfig.from_env(env)
