"""``http`` mode: one warm function process, every request proxied to it.

Better than of-watchdog: not ready until the function process accepts connections; a function process that
dies is restarted with backoff (503 meanwhile) instead of taking the container down; a connect the process
refuses is 503, any other upstream failure 502; and on SIGTERM the process is stopped only after the workers
have drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from watchdog.config import WatchdogConfig
from watchdog.errors import FunctionNotReadyError, FunctionTimeoutError, UpstreamError
from watchdog.headers import DURATION, duration_header, forwardable
from watchdog.process import OutputForwarder, spawn, terminate
from watchdog.readiness import Readiness

log = structlog.get_logger("watchdog.http")

# Responses up to this size are read whole and sent in one write; larger ones are streamed.
BUFFERED_RESPONSE_MAX = 256 * 1024
RESTART_DELAY_MIN_S = 0.1
RESTART_DELAY_MAX_S = 10.0
# A process that ran this long before dying starts the backoff again from the minimum.
STABLE_AFTER_S = 30.0


def is_streaming(request: web.Request) -> bool:
    """SSE and NDJSON responses are passed through as they come, with no deadline on the body."""
    accept = request.headers.get("Accept", "")
    return "text/event-stream" in accept or "application/x-ndjson" in accept


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


class FunctionProcess:
    """The supervisor of http mode: starts ``fprocess`` once, waits until it accepts, restarts it if it dies."""

    def __init__(self, config: WatchdogConfig) -> None:
        self._config = config
        upstream = urlsplit(config.upstream_url)
        self._host = upstream.hostname or "127.0.0.1"
        self._port = upstream.port or 80
        self._forwarder = OutputForwarder(config.prefix_logs, config.log_buffer_size)
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.starts = 0

    async def start(self, readiness: Readiness) -> None:
        self._task = asyncio.create_task(self._run(readiness), name="function-process")

    async def stop(self) -> None:
        self._stopping.set()
        if self._proc is not None and self._proc.returncode is None:
            code = await terminate(self._proc, self._config.write_timeout_s)
            log.info("function_process_stopped", pid=self._proc.pid, code=code)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, readiness: Readiness) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_DELAY_MIN_S
        while not self._stopping.is_set():
            started = loop.time()
            try:
                self._proc = proc = await spawn(self._config.fprocess, env=os.environ)
            except OSError as exc:
                log.error("function_process_start_failed", fprocess=list(self._config.fprocess), error=str(exc))
            else:
                self.starts += 1
                code = await self._watch(proc, readiness, started)
                readiness.mark_unready()
                if self._stopping.is_set():
                    return
                log.error("function_process_exited", pid=proc.pid, code=code, restart_in_s=delay)
            if loop.time() - started > STABLE_AFTER_S:
                delay = RESTART_DELAY_MIN_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_DELAY_MAX_S)

    async def _watch(self, proc: asyncio.subprocess.Process, readiness: Readiness, started: float) -> int:
        assert proc.stdout is not None
        assert proc.stderr is not None
        forwarders = [
            asyncio.create_task(self._forwarder.forward(proc.stdout, "stdout")),
            asyncio.create_task(self._forwarder.forward(proc.stderr, "stderr")),
        ]
        exited = asyncio.create_task(proc.wait())
        accepting = asyncio.create_task(self._wait_accepting())
        try:
            await asyncio.wait({exited, accepting}, return_when=asyncio.FIRST_COMPLETED)
            if accepting.done() and not exited.done():
                elapsed_ms = round((asyncio.get_running_loop().time() - started) * 1000, 1)
                log.info("function_process_accepting", pid=proc.pid, startup_ms=elapsed_ms)
                readiness.mark_ready()
            return await exited
        finally:
            accepting.cancel()
            await asyncio.gather(*forwarders, return_exceptions=True)

    async def _wait_accepting(self) -> None:
        pause = 0.005
        while True:
            try:
                async with asyncio.timeout(1.0):
                    _, writer = await asyncio.open_connection(self._host, self._port)
            except (OSError, TimeoutError):
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.1)
                continue
            writer.close()
            return


class HttpExecutor:
    """Proxies each request to ``upstream_url``: method, raw path and query, headers, streamed bodies."""

    def __init__(self, config: WatchdogConfig, readiness: Readiness) -> None:
        self._config = config
        self._flags = readiness.flags
        self._upstream = config.upstream_url
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=30.0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def invoke(self, request: web.Request, timeout_s: float | None) -> web.StreamResponse:
        if not self._flags.ready:
            raise FunctionNotReadyError("the function process is not ready")
        assert self._session is not None
        started = time.perf_counter()
        url = URL(self._upstream + request.raw_path, encoded=True)
        headers = forwardable(request.headers.items())
        if is_websocket(request):
            return await self._websocket(request, url, headers)
        if self._config.buffer_http:
            body: object = await request.read()
        else:
            body = request.content if request.body_exists else None
        streaming = is_streaming(request)
        try:
            async with asyncio.timeout(timeout_s):
                upstream = await self._session.request(
                    request.method, url, headers=headers, data=body, allow_redirects=False
                )
                if not streaming:
                    return await self._respond(request, upstream, started)
        except TimeoutError:
            raise FunctionTimeoutError(f"the function did not answer within {timeout_s:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            if exc.os_error.errno == errno.ECONNREFUSED:
                raise FunctionNotReadyError("the function process refused the connection") from None
            raise UpstreamError(f"cannot connect to the function process: {exc.os_error}") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"the function process failed: {exc!r}") from None
        return await self._stream(request, upstream, started)

    async def _respond(
        self, request: web.Request, upstream: aiohttp.ClientResponse, started: float
    ) -> web.StreamResponse:
        length = upstream.content_length
        if length is None or length > BUFFERED_RESPONSE_MAX or request.method == "HEAD":
            return await self._stream(request, upstream, started)
        try:
            data = await upstream.read()
        finally:
            upstream.release()
        headers = forwardable(upstream.headers.items())
        headers.popall("Content-Length", None)
        headers[DURATION] = duration_header(started)
        return web.Response(status=upstream.status, reason=upstream.reason, headers=headers, body=data)

    async def _stream(
        self, request: web.Request, upstream: aiohttp.ClientResponse, started: float
    ) -> web.StreamResponse:
        headers = forwardable(upstream.headers.items())
        headers[DURATION] = duration_header(started)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        try:
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Too late for a status: cut the connection so the caller sees an incomplete body, not a short one.
            log.warning("function_response_aborted", error=repr(exc))
            if request.transport is not None:
                request.transport.close()
        finally:
            upstream.close()
        return response

    async def _websocket(self, request: web.Request, url: URL, headers: CIMultiDict[str]) -> web.StreamResponse:
        assert self._session is not None
        for name in ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions"):
            headers.popall(name, None)
        protocols = tuple(p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip())
        headers.popall("Sec-WebSocket-Protocol", None)
        try:
            upstream = await self._session.ws_connect(url, headers=headers, protocols=protocols)
        except aiohttp.ClientConnectorError as exc:
            raise FunctionNotReadyError(f"cannot connect to the function process: {exc.os_error}") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"websocket upgrade refused by the function: {exc!r}") from None
        client = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else ())
        await client.prepare(request)

        async def pump(
            source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
            sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        ) -> None:
            async for message in source:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type is aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
            await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)

        async with upstream:
            tasks = [asyncio.create_task(pump(client, upstream)), asyncio.create_task(pump(upstream, client))]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        return client
