"""One executor per mode, chosen once at start (of-watchdog's buildRequestHandler).

An executor serves requests inside one worker process. Work that must happen once per watchdog, not once per
worker (the warm function process of ``http`` mode, loading the handler of ``python`` mode), is done by the
mode's :class:`Supervisor`, which runs in the first process before any worker is forked.
"""

from __future__ import annotations

from typing import Protocol

from servicekit.client_side import ClientRequest, Reply
from watchdog.config import Mode, WatchdogConfig
from watchdog.readiness import Readiness


class Executor(Protocol):
    @property
    def lean(self) -> bool:
        """Whether it serves any server's request and reply, so servicekit.lean_server alone serves the watchdog
        (no aiohttp in the process); the others need aiohttp's request and an AiohttpReply."""
        ...

    async def start(self) -> None:
        """Acquire per-worker resources (client sessions, thread pools)."""

    async def invoke(self, request: ClientRequest, timeout_s: float | None, reply: Reply) -> None:
        """Serve one request, answering through ``reply``; raise an InvocationError subclass for a failure the
        caller should see, before anything was answered."""

    async def close(self) -> None:
        """Release what start() acquired."""


class Supervisor(Protocol):
    async def start(self, readiness: Readiness) -> None:
        """Begin the mode's once-per-watchdog work; mark ready when the function can take requests."""

    async def stop(self) -> None:
        """Stop it, after the workers have drained."""


class ReadyAtStart:
    """The supervisor of modes with nothing to wait for: ready as soon as the server listens."""

    async def start(self, readiness: Readiness) -> None:
        readiness.mark_ready()

    async def stop(self) -> None:
        return None


def build_supervisor(config: WatchdogConfig) -> Supervisor:
    if config.mode is Mode.HTTP:
        from watchdog.executor.http import FunctionProcess

        return FunctionProcess(config)
    if config.mode is Mode.PYTHON:
        from watchdog.executor.python import load_handler

        load_handler(config)  # fail at start, in the first process, not in every worker
    return ReadyAtStart()


def build_executor(config: WatchdogConfig, readiness: Readiness) -> Executor:
    if config.mode is Mode.HTTP:
        from watchdog.executor.http import HttpExecutor

        return HttpExecutor(config, readiness)
    if config.mode in (Mode.STREAMING, Mode.SERIALIZING):
        from watchdog.executor.fork import ForkExecutor

        return ForkExecutor(config)
    if config.mode is Mode.STATIC:
        from watchdog.executor.static import StaticExecutor

        return StaticExecutor(config)
    from watchdog.executor.python import PythonExecutor

    return PythonExecutor(config)
