"""SIGTERM and SIGINT as asyncio events, the one way every pyfaasd process learns it should stop.

The first signal sets :attr:`Shutdown.requested` (and logs ``shutdown_requested``); a second one sets
:attr:`Shutdown.hurried`, which a drain may use to cut its wait short (of-watchdog and uvicorn alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

log = structlog.get_logger("shutdown")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Shutdown:
    """Handlers for SIGTERM and SIGINT on the running loop; create it inside the loop that should stop."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurried = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            self.hurried.set()
        else:
            log.info("shutdown_requested", signal=sig.name)
            self.requested.set()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` unless hurried."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.hurried.wait(), seconds)
