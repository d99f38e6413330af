"""``http`` mode: one warm function process, every request proxied to it.

Better than of-watchdog: not ready until the function process accepts connections; a function process that
dies is restarted with backoff (503 meanwhile) instead of taking the container down; a connect the process
refuses is 503, any other upstream failure 502; and on SIGTERM the process is stopped only after the workers
have drained.

Requests go through the relay the gateway uses too (servicekit.relay): a request body must arrive within
``read_timeout`` (408) and stay within ``max_body_bytes`` when set (413); ``exec_timeout`` bounds the answer
(504), except the body of server-sent events and NDJSON. An upgrade (a websocket) is passed through as bytes
(servicekit.tunnel); ``exec_timeout`` bounds only the function's answer to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Final
from urllib.parse import urlsplit

import structlog

from servicekit.client_side import ClientRequest, Reply
from servicekit.lean_server import LeanReply, LeanRequest
from servicekit.relay import RelayError, body_length, proxy, read_body
from servicekit.request_head import REQUEST_DROP, RequestHead
from servicekit.tunnel import UpstreamHeadTimeoutError, tunnel
from servicekit.upstream import UpstreamPool
from watchdog.config import WatchdogConfig
from watchdog.errors import FunctionNotReadyError, FunctionTimeoutError, UpstreamError, from_relay
from watchdog.process import OutputForwarder, spawn, terminate
from watchdog.readiness import Readiness

log = structlog.get_logger("watchdog.http")

# The client's Host goes to the function as it is (of-watchdog does the same); the upstream's when there is none.
_DROP: Final = REQUEST_DROP - {b"host"}
_WATCH: Final = frozenset({b"host"})
_UPGRADE_DROP: Final = frozenset({b"content-length", b"transfer-encoding"})
RESTART_DELAY_MIN_S = 0.1
RESTART_DELAY_MAX_S = 10.0
# A process that ran this long before dying starts the backoff again from the minimum.
STABLE_AFTER_S = 30.0


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
        self._host_line = b"Host: " + upstream.netloc.encode() + b"\r\n"
        self._pool = UpstreamPool(*config.upstream_address)
        self._max_body = config.max_body_bytes
        self._read_timeout = config.read_timeout_s or None  # 0: no deadline, as in of-watchdog

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._pool.close()

    lean = True

    async def invoke(self, request: ClientRequest, timeout_s: float | None, reply: Reply) -> None:
        if not self._flags.ready:
            raise FunctionNotReadyError("the function process is not ready")
        started = time.perf_counter()
        if isinstance(request, LeanRequest) and request.upgraded is not None:
            assert isinstance(reply, LeanReply)
            await self._tunnel(request, reply, timeout_s)
            return
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        try:
            body = await read_body(request, self._max_body, self._read_timeout, whole=self._config.buffer_http)
            await proxy(
                request,
                reply,
                self._pool,
                self._head(request, body_length(request, body)),
                body,
                deadline=deadline,
                max_body=self._max_body,
                read_timeout=self._read_timeout,
                write_timeout=None,
                started=started,
            )
        except RelayError as exc:
            raise from_relay(exc) from None
        except TimeoutError as exc:
            if timeout_s is None:  # a TimeoutError that is not our deadline: the OSError of a timed out connect
                raise UpstreamError(f"the function process failed: {exc}") from None
            raise FunctionTimeoutError(f"the function did not answer within {timeout_s:g}s") from None
        except ConnectionRefusedError:
            raise FunctionNotReadyError("the function process refused the connection") from None
        except OSError as exc:
            raise UpstreamError(f"the function process failed: {exc}") from None

    def _head(self, request: ClientRequest, length: int | None) -> bytes:
        head = RequestHead(request.method, self._base_path + request.raw_path)
        if b"host" not in head.copy(request, _DROP, _WATCH):
            head.parts.append(self._host_line)  # the hot path appends its one line itself, as the gateway's does
        return head.finish(length)

    async def _tunnel(self, request: LeanRequest, reply: LeanReply, timeout_s: float | None) -> None:
        """An upgrade: its head as it came (``Connection``, ``Upgrade`` and all) to the function, then bytes. A body
        of the upgrade request itself is not passed on, nor announced (a websocket handshake has none)."""
        head = RequestHead(request.method, self._base_path + request.raw_path)
        host = False
        for name, value in request.raw_headers:  # (not RequestHead.copy: the names Connection lists stay here)
            lower = name.lower()
            host = host or lower == b"host"
            if lower not in _UPGRADE_DROP:
                head.add(name, value)
        if not host:
            head.parts.append(self._host_line)
        head.parts.append(b"\r\n")
        try:
            await tunnel(request, reply, self._config.upstream_address, b"".join(head.parts), timeout_s)
        except UpstreamHeadTimeoutError:
            raise FunctionTimeoutError(f"the function did not answer the upgrade within {timeout_s:g}s") from None
        except ConnectionRefusedError:
            raise FunctionNotReadyError("the function process refused the connection") from None
        except OSError as exc:
            raise UpstreamError(f"the function process failed: {exc}") from None
