"""Test servers that listen as the services do: servicekit.lean_server in front of the aiohttp app
(:class:`LeanTestServer`, the gateway), or alone (:class:`LeanOnlyTestServer`, the watchdog's http and python modes).

The gateway's and the watchdog's unit suites listen through them as the services do; the client-limit tests are
parametrized over both listeners (``SERVERS``: aiohttp's alone, or the lean server in front). Both are aiohttp
TestServers, so ``aiohttp_client`` drives them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer
from yarl import URL

from servicekit.aiohttp_site import LimitedSite
from servicekit.client_limits import ClientGuard, ClientLimits, LeanSite
from servicekit.lean_server import LeanServer, Router

SERVERS = ("aiohttp", "lean")


class LeanTestServer(TestServer):
    """``aiohttp.test_utils.TestServer`` whose listener is a LimitedSite with a lean server routed by ``route``."""

    def __init__(
        self,
        app: web.Application,
        route: Router,
        *,
        limits: ClientLimits | None = None,
        drain_timeout_s: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits or ClientLimits(header_timeout_s=10.0, idle_timeout_s=75.0, max_connections=1000)
        self.lean = LeanServer(
            route, header_timeout_s=self.limits.header_timeout_s, idle_timeout_s=self.limits.idle_timeout_s
        )
        self._drain_timeout_s = drain_timeout_s

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self.runner:
            return
        lean = self.lean

        async def drain(_app: web.Application) -> None:
            await lean.shutdown(self._drain_timeout_s)

        self.app.on_shutdown.append(drain)
        self.runner = await self._make_runner(handler_cancellation=True, **kwargs)
        await self.runner.setup()
        site = LimitedSite(self.runner, "127.0.0.1", 0, ClientGuard(self.limits), lean=lean)
        await site.start()
        self.host, self.port = "127.0.0.1", site.port
        self.scheme = "http"
        self._root = URL(f"http://127.0.0.1:{self.port}")


class LeanOnlyTestServer(BaseTestServer):
    """A listener of servicekit.lean_server alone (no aiohttp app behind it), as ``aiohttp_client`` drives one."""

    def __init__(self, route: Router, *, limits: ClientLimits | None = None, drain_timeout_s: float = 5.0) -> None:
        super().__init__()
        self.limits = limits or ClientLimits(header_timeout_s=10.0, idle_timeout_s=75.0, max_connections=1000)
        self.lean = LeanServer(
            route, header_timeout_s=self.limits.header_timeout_s, idle_timeout_s=self.limits.idle_timeout_s
        )
        self._drain_timeout_s = drain_timeout_s
        self._site: LeanSite | None = None

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        raise NotImplementedError("no aiohttp runner: the lean server listens alone")

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self._site is not None:
            return
        self._site = LeanSite(self.lean, "127.0.0.1", 0, ClientGuard(self.limits))
        await self._site.start()
        self.host, self.port = "127.0.0.1", self._site.port
        self.scheme = "http"
        self._root = URL(f"http://127.0.0.1:{self.port}")

    async def close(self) -> None:
        if self._site is not None and not self._closed:
            await self._site.stop(self._drain_timeout_s)
            self._root = None
            self._closed = True


ServerFactory = Callable[[web.Application], TestServer]
