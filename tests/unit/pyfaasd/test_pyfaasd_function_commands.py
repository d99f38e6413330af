"""`pyfaasd list|logs|remove|secret` against the real provider app over the fakes; `invoke` against a real server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from pyfaasd import function_commands
from pyfaasd.cli import build_parser
from pyfaasd.gateway_client import Target
from pyfaasd.secret_commands import secret_create, secret_ls, secret_rm
from servicekit.auth import Credentials
from tests.unit.provider.fakes import Behaviour, World

CREDENTIALS = Credentials("admin", "pw")


@pytest.fixture
async def target(tmp_path: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[tuple[World, Target]]:
    world = World(tmp_path / "state")
    await world.start()
    server = await aiohttp_server(world.app(CREDENTIALS))
    yield world, Target(str(server.make_url("")).rstrip("/"), CREDENTIALS)
    await world.core.close()


async def test_list_shows_status_replicas_and_source(target: tuple[World, Target]) -> None:
    world, gateway = target
    await world.deploy("echo", "fn:1")
    await world.deploy("other", "fn:2")
    out: list[str] = []
    err: list[str] = []
    assert await asyncio.to_thread(function_commands.list_functions, gateway, "", True, out.append, err.append) == 0
    assert [line.split() for line in out] == [
        ["NAME", "STATUS", "REPLICAS", "INVOCATIONS", "IMAGE", "OR", "CODE", "URL"],
        ["echo", "Ready", "1/1", "0", "fn:1", f"{gateway.gateway}/function/echo"],
        ["other", "Ready", "1/1", "0", "fn:2", f"{gateway.gateway}/function/other"],
    ]
    wrong = Target(gateway.gateway, Credentials("admin", "nope"))
    assert await asyncio.to_thread(function_commands.list_functions, wrong, "", False, out.append, err.append) == 1
    assert err[-1].startswith("pyfaasd: cannot list the functions: 401")


async def test_logs_print_each_line_and_a_missing_function_fails(target: tuple[World, Target]) -> None:
    world, gateway = target
    world.runtime.behaviours["fn:2"] = Behaviour(output=("first line", "second line"))
    await world.deploy("talker", "fn:2")
    out: list[str] = []
    err: list[str] = []
    code = await asyncio.to_thread(
        function_commands.logs, gateway, "talker", "", False, None, "", out.append, err.append
    )
    assert code == 0, err
    line = re.compile(r"\S+Z talker \((talker\.openfaas-fn\.\S+)\) (.*)")
    matched = [line.fullmatch(text) for text in out]
    assert all(matched), out
    assert [m.group(2) for m in matched if m] == ["first line", "second line"]
    code = await asyncio.to_thread(function_commands.logs, gateway, "ghost", "", False, 5, "", out.append, err.append)
    assert code == 1
    assert "cannot read the logs of ghost" in err[-1]


async def test_remove_names_each_result(target: tuple[World, Target]) -> None:
    world, gateway = target
    await world.deploy("gone")
    out: list[str] = []
    err: list[str] = []
    code = await asyncio.to_thread(function_commands.remove, gateway, ["gone", "ghost"], "", out.append, err.append)
    assert code == 1
    assert out == ["Removed gone."]
    assert "cannot remove ghost: 404" in err[-1]
    assert world.runtime.of("gone") == []


async def test_secret_create_list_and_remove(target: tuple[World, Target]) -> None:
    _world, gateway = target
    out: list[str] = []
    err: list[str] = []
    assert await asyncio.to_thread(secret_create, gateway, "api-key", "hush", "", out.append, err.append) == 0
    assert out[-1].startswith("Created secret api-key.")
    assert await asyncio.to_thread(secret_create, gateway, "api-key", "again", "", out.append, err.append) == 1
    assert "409" in err[-1]
    out.clear()
    assert await asyncio.to_thread(secret_ls, gateway, "", out.append, err.append) == 0
    assert [line.split() for line in out] == [["NAME", "NAMESPACE"], ["api-key", "openfaas-fn"]]
    assert await asyncio.to_thread(secret_rm, gateway, ["api-key", "ghost"], "", out.append, err.append) == 1
    assert out[-1] == "Removed secret api-key."
    assert "404" in err[-1]


async def test_invoke_sends_method_headers_and_body_without_credentials(aiohttp_server: AiohttpServer) -> None:
    seen: list[tuple[str, str, str | None, str | None, bytes]] = []

    async def function(request: web.Request) -> web.Response:
        seen.append(
            (
                request.method,
                request.path_qs,
                request.headers.get("Content-Type"),
                request.headers.get("Authorization"),
                await request.read(),
            )
        )
        status = 500 if request.query.get("fail") else 200
        return web.Response(status=status, body=b"answered\n\xff\x00")  # not text: passed on byte for byte

    app = web.Application()
    app.router.add_route("*", "/function/{tail:.*}", function)
    server = await aiohttp_server(app)
    gateway = Target(str(server.make_url("")).rstrip("/"), CREDENTIALS)
    written: list[bytes] = []
    err: list[str] = []
    call = function_commands.Invocation("echo", "PUT", b"hi", {"Content-Type": "application/json"}, "/items", "a=1")
    assert await asyncio.to_thread(function_commands.invoke, gateway, call, written.append, err.append) == 0
    assert seen[-1] == ("PUT", "/function/echo/items?a=1", "application/json", None, b"hi")
    assert written == [b"answered\n\xff\x00"]
    failing = function_commands.Invocation("echo", "GET", b"ignored", {}, "", "fail=1")
    assert await asyncio.to_thread(function_commands.invoke, gateway, failing, written.append, err.append) == 1
    method, _path, _type, _auth, body = seen[-1]
    assert (method, body) == ("GET", b"")
    assert err[-1] == "pyfaasd invoke: echo answered 500 Internal Server Error"


def test_the_new_commands_parse() -> None:
    parser = build_parser()
    assert parser.parse_args(["logs", "fn", "-f"]).follow is True
    assert parser.parse_args(["rm", "a", "b"]).names == ["a", "b"]
    assert parser.parse_args(["invoke", "fn", "--method", "get"]).method == "GET"
    assert parser.parse_args(["secret", "create", "k", "--from-literal", "v"]).from_literal == "v"
    assert parser.parse_args(["list", "-v"]).verbose is True
