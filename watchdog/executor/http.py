"""``http`` mode: one warm function process, every request proxied to it.

Better than of-watchdog: not ready until the function process accepts connections; a function process that
dies is restarted with backoff (503 meanwhile) instead of taking the container down; a connect the process
refuses is 503, any other upstream failure 502; and on SIGTERM the process is stopped only after the workers
have drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from yarl import URL

from servicekit.headers import DURATION, duration_header, forwardable
from servicekit.upstream import (
    ResponseHead,
    UpstreamClosedError,
    UpstreamConnection,
    UpstreamPool,
    UpstreamProtocolError,
    request_head,
)
from servicekit.websocket import relay_websocket
from watchdog.config import WatchdogConfig
from watchdog.errors import FunctionNotReadyError, FunctionTimeoutError, UpstreamError
from watchdog.process import OutputForwarder, spawn, terminate
from watchdog.readiness import Readiness

log = structlog.get_logger("watchdog.http")

# Responses up to this size are read whole and sent in one write; larger ones are streamed.
BUFFERED_RESPONSE_MAX = 256 * 1024
# Request bodies up to this size are read whole and sent with Content-Length; larger ones are streamed chunked.
BUFFERED_REQUEST_MAX = 1024 * 1024
# Below this size the request head and body are joined into one write.
WRITE_JOIN_MAX = 64 * 1024
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
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
        self._host, self._port = config.upstream_address
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
        upstream = urlsplit(config.upstream_url)
        self._base_path = upstream.path
        self._netloc = upstream.netloc
        self._pool = UpstreamPool(*config.upstream_address)
        self._ws_session: aiohttp.ClientSession | None = None  # websocket upgrades only

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._pool.close()
        if self._ws_session is not None:
            await self._ws_session.close()

    async def invoke(self, request: web.Request, timeout_s: float | None) -> web.StreamResponse:
        if not self._flags.ready:
            raise FunctionNotReadyError("the function process is not ready")
        started = time.perf_counter()
        if is_websocket(request):
            return await self._websocket(request, URL(self._config.upstream_url + request.raw_path, encoded=True))
        length = request.content_length
        body: bytes | None = b""
        if request.body_exists:
            small = length is not None and length <= BUFFERED_REQUEST_MAX
            body = await request.read() if self._config.buffer_http or small else None
        streaming = is_streaming(request)
        try:
            async with asyncio.timeout(timeout_s):
                connection, head = await self._exchange(request, body)
                if not streaming:
                    return await self._respond(request, connection, head, started)
        except TimeoutError:
            raise FunctionTimeoutError(f"the function did not answer within {timeout_s:g}s") from None
        except ConnectionRefusedError:
            raise FunctionNotReadyError("the function process refused the connection") from None
        except (OSError, UpstreamProtocolError) as exc:
            raise UpstreamError(f"the function process failed: {exc}") from None
        return await self._stream(request, connection, head, started)

    async def _exchange(self, request: web.Request, body: bytes | None) -> tuple[UpstreamConnection, ResponseHead]:
        """Send the request on a pooled connection and read the response head.

        A pooled connection the upstream closed while it was idle fails before any response byte: an idempotent
        request whose body is in memory is then sent once more on a new connection.
        """
        headers = list(request.headers.items())
        if "Host" not in request.headers:
            headers.append(("Host", self._netloc))
        head = request_head(
            request.method, self._base_path + request.raw_path, headers, None if body is None else len(body)
        )
        while True:
            connection = await self._pool.connect()
            try:
                if body is None:
                    await connection.write(head)
                    async for chunk in request.content.iter_any():
                        await connection.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await connection.write(b"0\r\n\r\n")
                elif len(body) > WRITE_JOIN_MAX:
                    await connection.write(head)
                    await connection.write(body)
                else:
                    await connection.write(head + body)
                return connection, await connection.read_head(request.method)
            except UpstreamClosedError as exc:
                connection.close()
                replayable = body is not None  # a streamed body has been consumed and cannot be sent again
                if connection.reused and exc.before_response and replayable and request.method in IDEMPOTENT:
                    continue
                raise
            except BaseException:
                connection.close()
                raise

    async def _respond(
        self, request: web.Request, connection: UpstreamConnection, head: ResponseHead, started: float
    ) -> web.StreamResponse:
        length = head.content_length
        if request.method == "HEAD" or (head.has_body and (length is None or length > BUFFERED_RESPONSE_MAX)):
            return await self._stream(request, connection, head, started)
        try:
            data = await connection.read_body(head)
        except BaseException:
            connection.close()
            raise
        self._pool.release(connection, head)
        headers = forwardable(head.headers)
        headers.popall("Content-Length", None)
        headers[DURATION] = duration_header(started)
        return web.Response(status=head.status, reason=head.reason or None, headers=headers, body=data)

    async def _stream(
        self, request: web.Request, connection: UpstreamConnection, head: ResponseHead, started: float
    ) -> web.StreamResponse:
        headers = forwardable(head.headers)
        headers[DURATION] = duration_header(started)
        response = web.StreamResponse(status=head.status, reason=head.reason or None, headers=headers)
        try:
            await response.prepare(request)
            async for chunk in connection.body(head):
                await response.write(chunk)
            await response.write_eof()
        except (OSError, UpstreamProtocolError, TimeoutError) as exc:
            # Too late for a status: cut the connection so the caller sees an incomplete body, not a short one.
            connection.close()
            log.warning("function_response_aborted", error=repr(exc))
            if request.transport is not None:
                request.transport.close()
            return response
        except BaseException:
            connection.close()
            raise
        self._pool.release(connection, head)
        return response

    async def _websocket(self, request: web.Request, url: URL) -> web.StreamResponse:
        if self._ws_session is None:
            self._ws_session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",)
            )
        headers = forwardable(request.headers.items())
        for name in ("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Extensions"):
            headers.popall(name, None)
        protocols = tuple(p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip())
        headers.popall("Sec-WebSocket-Protocol", None)
        try:
            upstream = await self._ws_session.ws_connect(url, headers=headers, protocols=protocols)
        except aiohttp.ClientConnectorError as exc:
            raise FunctionNotReadyError(f"cannot connect to the function process: {exc.os_error}") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"websocket upgrade refused by the function: {exc!r}") from None
        return await relay_websocket(request, upstream)
