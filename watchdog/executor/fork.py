"""``streaming`` and ``serializing`` modes: one ``fprocess`` per request, the body on stdin.

The process sees the watchdog's environment plus of-watchdog's CGI-style variables (``Http_Method``,
``Http_Query``, ``Http_Path``, ``Http_<Header_Name>``).

- serializing: the whole body in, the whole stdout out; 500 with ``exit status N`` when the process fails.
- streaming: stdout is sent as it is written. Unlike of-watchdog (always 200), a process that fails before
  writing anything answers 500, and one that runs out of time before writing anything answers 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import structlog
from aiohttp import web

from servicekit.aiohttp_reply import AiohttpReply
from servicekit.client_side import ClientRequest, Reply
from servicekit.headers import DURATION, duration_header
from watchdog.config import Mode, WatchdogConfig
from watchdog.errors import FunctionError, FunctionTimeoutError
from watchdog.process import OutputForwarder, kill, spawn

log = structlog.get_logger("watchdog.fork")

STDOUT_READ_SIZE = 65536


def canonical_header(name: str) -> str:
    """Go's canonical MIME header key (``x-call-id`` → ``X-Call-Id``)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def cgi_environment(base: dict[str, str], request: web.Request) -> dict[str, str]:
    env = dict(base)
    for name, value in request.headers.items():
        key = "Http_" + canonical_header(name).replace("-", "_")
        env.setdefault(key, value)  # first value wins, as Go's Header.Get
    env["Http_Method"] = request.method
    if request.query_string:
        env["Http_Query"] = request.query_string
    if request.path:
        env["Http_Path"] = request.path
    return env


def failure_text(code: int) -> str:
    return f"exit status {code}" if code >= 0 else f"signal: {-code}"


class ForkExecutor:
    def __init__(self, config: WatchdogConfig) -> None:
        self._config = config
        self._streaming = config.mode is Mode.STREAMING
        self._forwarder = OutputForwarder(config.prefix_logs, config.log_buffer_size)
        self._base_env = dict(os.environ)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    lean = False  # aiohttp's objects: its calls are never the lean server's

    async def invoke(self, request: ClientRequest, timeout_s: float | None, reply: Reply) -> None:
        assert isinstance(request, web.Request)  # not lean: aiohttp serves this mode (watchdog/aiohttp_app.py)
        assert isinstance(reply, AiohttpReply)
        reply.response = await self._answer(request, timeout_s)

    async def _answer(self, request: web.Request, timeout_s: float | None) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            proc = await spawn(
                self._config.fprocess, env=cgi_environment(self._base_env, request), stdin=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            raise FunctionError(f"cannot start fprocess {self._config.fprocess[0]!r}: {exc.strerror}") from None
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        stderr = asyncio.create_task(self._forwarder.forward(proc.stderr, "stderr"))
        try:
            if self._streaming:
                return await self._stream(request, proc, started, timeout_s)
            return await self._serialize(request, proc, started, timeout_s)
        finally:
            await kill(proc)
            await stderr

    async def _serialize(
        self, request: web.Request, proc: asyncio.subprocess.Process, started: float, timeout_s: float | None
    ) -> web.StreamResponse:
        body = await request.read()
        try:
            async with asyncio.timeout(timeout_s):
                output, _ = await asyncio.gather(proc.stdout.read(), _feed(proc, body))  # type: ignore[union-attr]
                code = await proc.wait()
        except TimeoutError:
            raise FunctionTimeoutError(f"the function did not finish within {timeout_s:g}s") from None
        if code != 0:
            raise FunctionError(failure_text(code))
        return web.Response(
            body=output,
            headers={"Content-Type": self._config.content_type, DURATION: duration_header(started)},
        )

    async def _stream(
        self, request: web.Request, proc: asyncio.subprocess.Process, started: float, timeout_s: float | None
    ) -> web.StreamResponse:
        assert proc.stdout is not None
        feeder = asyncio.create_task(_feed_stream(proc, request))
        response: web.StreamResponse | None = None
        try:
            async with asyncio.timeout(timeout_s):
                first = await proc.stdout.read(STDOUT_READ_SIZE)
                if not first:
                    code = await proc.wait()
                    if code != 0:
                        raise FunctionError(failure_text(code))
                response = web.StreamResponse(
                    headers={
                        "Content-Type": self._config.content_type,
                        DURATION: duration_header(started),
                    }
                )
                await response.prepare(request)
                chunk = first
                while chunk:
                    await response.write(chunk)
                    chunk = await proc.stdout.read(STDOUT_READ_SIZE)
                code = await proc.wait()
        except TimeoutError:
            if response is None:
                raise FunctionTimeoutError(f"the function did not answer within {timeout_s:g}s") from None
            log.warning("function_killed_midstream", timeout_s=timeout_s)
            if request.transport is not None:
                request.transport.close()
            return response
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        if code != 0:
            log.warning("function_failed_midstream", code=code)
        await response.write_eof()
        return response


async def _feed(proc: asyncio.subprocess.Process, body: bytes) -> None:
    assert proc.stdin is not None
    try:
        if body:
            proc.stdin.write(body)
            await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the function did not read all of its input; its exit status says whether that is a failure
    finally:
        proc.stdin.close()


async def _feed_stream(proc: asyncio.subprocess.Process, request: web.Request) -> None:
    assert proc.stdin is not None
    try:
        async for chunk in request.content.iter_any():
            proc.stdin.write(chunk)
            await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        proc.stdin.close()
