"""The systemd notification protocol (``sd_notify(3)``), stdlib only.

The units run the provider and the gateway with ``Type=notify``: systemd counts a service as started only when
it sends ``READY=1`` to the datagram socket named by ``NOTIFY_SOCKET``, so ``pyfaasd.service`` (ordered after
the provider) starts once the provider really answers, and ``systemctl start`` returns when the API is up.

Every function here is a no-op returning ``False`` when ``NOTIFY_SOCKET`` is unset (a run from a shell, from
``pyfaasd up`` or from tests), so callers never need to check whether they run under systemd. A failed send is
also ``False``, never an exception: a notification is best-effort and must not take a serving process down.

The socket path is either a file system path or, when it starts with ``@``, a name in the abstract namespace
(the ``@`` stands for the leading NUL byte), as in systemd's own ``sd_notify``.

``WATCHDOG=1`` keep-alives: with ``WatchdogSec=`` in the unit, systemd sets ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``) and restarts the service when no ping arrives in time. :func:`start_watchdog` starts a task
that pings every half interval from the event loop, so a wedged loop (a blocking call on it) is what gets the
service restarted.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def socket_address(value: str) -> str | bytes | None:
    """The ``connect()`` address for a ``NOTIFY_SOCKET`` value; ``None`` when it is empty or unsupported.

    ``/run/systemd/notify`` is a path, ``@name`` is the abstract name ``\\0name``. Other forms (``vsock:`` of
    systemd 254 and later) are not supported and give ``None``.
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def notify(state: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (one or more ``KEY=VALUE`` lines) to systemd; whether it was sent.

    ``env`` defaults to ``os.environ``; the variable is read at each call, so a test (or a process started
    under systemd) may set it at any time.
    """
    environ = os.environ if env is None else env
    address = socket_address(environ.get(NOTIFY_SOCKET, ""))
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """``READY=1``: start-up is finished and the service answers requests."""
    return notify("READY=1" if status_text is None else f"READY=1\nSTATUS={_one_line(status_text)}")


def stopping(status_text: str | None = None) -> bool:
    """``STOPPING=1``: shutdown (draining) has begun."""
    return notify("STOPPING=1" if status_text is None else f"STOPPING=1\nSTATUS={_one_line(status_text)}")


def status(text: str) -> bool:
    """``STATUS=...``: a one-line free-form state shown by ``systemctl status``."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog_ping() -> bool:
    """``WATCHDOG=1``: the keep-alive that ``WatchdogSec=`` expects."""
    return notify("WATCHDOG=1")


def extend_timeout(seconds: float) -> bool:
    """``EXTEND_TIMEOUT_USEC``: ask for ``seconds`` more to finish starting (or stopping) from now on."""
    return notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between keep-alives (half of ``WATCHDOG_USEC``); ``None`` when the watchdog is not for us.

    Not for us means: ``WATCHDOG_USEC`` unset, not a positive number, or ``WATCHDOG_PID`` set to another
    process (a child that inherited the environment must not ping in its parent's name).
    """
    environ = os.environ if env is None else env
    try:
        usec = int(environ.get(WATCHDOG_USEC, ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = environ.get(WATCHDOG_PID)
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


async def run_watchdog(interval_s: float) -> None:
    """Send ``WATCHDOG=1`` now and then every ``interval_s`` seconds, until cancelled."""
    while True:
        watchdog_ping()
        await asyncio.sleep(interval_s)


def start_watchdog(env: Mapping[str, str] | None = None) -> asyncio.Task[None] | None:
    """Start :func:`run_watchdog` on the running loop when systemd asked for keep-alives; else ``None``.

    The caller holds the returned task and cancels it on shutdown (:func:`stop_watchdog`).
    """
    interval = watchdog_interval(env)
    if interval is None:
        return None
    return asyncio.get_running_loop().create_task(run_watchdog(interval), name="sd-notify-watchdog")


async def stop_watchdog(task: asyncio.Task[None] | None) -> None:
    """Cancel a task from :func:`start_watchdog` and wait for it; ``None`` is accepted and ignored."""
    if task is None:
        return
    task.cancel()
    # wait() neither raises the task's CancelledError nor swallows a cancellation of the caller.
    await asyncio.wait([task])


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment in the datagram.
    return " ".join(text.splitlines())
