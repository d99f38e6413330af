"""Bringing the stack up on a swarm (``pyfaasd up --backend swarm``, the ``pyfaasd-swarm`` unit of ``install``).

The host cannot reach task addresses on the overlay, nor Swarm's DNS (docs/swarm.md, "What this machine
allows"), so the provider and the gateway run in the network namespace of an **anchor**: a container that only
sleeps, attached to the overlay, with the gateway's port(s) published on the host. The steps:

1. this engine in a swarm: one is made (``swarm init``, advertising ``PYFAASD_SWARM_ADVERTISE_ADDR``) when the
   engine is in none; a worker or a locked/pending node is refused, naming its state;
2. the attachable overlay (``PYFAASD_SWARM_NETWORK``), labelled as the provider labels it;
3. the anchor ``pyfaasd-anchor-<network>``, running, with the gateway's address published (``host:port`` on the
   host → the same port inside, where the gateway listens on 0.0.0.0);
4. :func:`enter_network_namespace`: this process moves into the anchor's namespace (``setns``), before it starts
   any thread; or :func:`bind_network_namespace` pins it at a path that systemd units name in
   ``NetworkNamespacePath=``.

The Docker socket and the state dir are reached through the file system as before; only the network differs.
"""

from __future__ import annotations

import ctypes
import os
import select
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from provider.config import SWARM_NETWORK
from provider.errors import DockerUnavailableError, RuntimeFailureError
from provider.swarm_runtime import Anchor, SwarmNode
from provider.swarm_runtime import Published as Published  # re-exported: callers name the ports they publish
from provider.swarm_spec import LABEL_NETWORK
from servicekit.settings import Setting, parse_text

ANCHOR_IMAGE: Final = "pyfaasd/runtime-python:latest"  # built locally by scripts/build-images: never pulled
CLONE_NEWNET: Final = 0x40000000

ADVERTISE_ADDR: Final = Setting(
    "PYFAASD_SWARM_ADVERTISE_ADDR",
    "--swarm-advertise-addr",
    "",
    "the address a swarm made by pyfaasd advertises to other nodes (default: the engine's choice)",
    parse_text,
)
SETTINGS: Final[tuple[Setting[Any], ...]] = (SWARM_NETWORK, ADVERTISE_ADDR)


class SwarmStackError(Exception):
    """The stack cannot be brought up on this engine's swarm; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class SwarmReady:
    anchor: Anchor
    made_swarm: bool  # this call ran ``swarm init``


def anchor_name(network: str) -> str:
    return f"pyfaasd-anchor-{network}"


async def prepare(network: str, advertise_addr: str, ports: tuple[Published, ...]) -> SwarmReady:
    """Steps 1 to 3 above; idempotent."""
    try:
        node = await SwarmNode.connect()
    except DockerUnavailableError as e:
        raise SwarmStackError(str(e)) from e
    try:
        state, manager = await node.swarm_state()
        made = False
        if state == "inactive":
            await node.init_swarm(advertise_addr)
            made = True
        elif state != "active" or not manager:
            raise SwarmStackError(
                f"this Docker Engine is a swarm {'worker' if state == 'active' else 'node in state ' + repr(state)}: "
                "the provider needs a manager (run pyfaasd on a manager node, or `docker swarm leave` first)"
            )
        await node.ensure_network(network, {LABEL_NETWORK: network})
        anchor = await node.ensure_anchor(anchor_name(network), network, ANCHOR_IMAGE, ports)
    except RuntimeFailureError as e:
        raise SwarmStackError(str(e)) from e
    finally:
        await node.close()
    return SwarmReady(anchor, made)


async def running_anchor(network: str) -> Anchor | None:
    """The stack's anchor on ``network`` if it runs (``pyfaasd status``)."""
    try:
        node = await SwarmNode.connect()
    except DockerUnavailableError as e:
        raise SwarmStackError(str(e)) from e
    try:
        return await node.running_anchor(anchor_name(network))
    except RuntimeFailureError as e:
        raise SwarmStackError(str(e)) from e
    finally:
        await node.close()


async def remove_anchor(network: str) -> None:
    node = await SwarmNode.connect()
    try:
        await node.remove_anchor(anchor_name(network))
    finally:
        await node.close()


def enter_network_namespace(pid: int) -> None:
    """Move this process into the network namespace of ``pid`` (see :func:`enter_network_namespace_at`)."""
    enter_network_namespace_at(Path(f"/proc/{pid}/ns/net"))


def enter_network_namespace_at(path: Path) -> None:
    """Move this process into the network namespace at ``path`` (``/proc/<pid>/ns/net`` or one pinned by
    :func:`bind_network_namespace`). Only the calling thread moves, so it must be the only one: every thread
    started afterwards inherits the namespace."""
    if threading.active_count() != 1:
        raise SwarmStackError("cannot enter the anchor's network namespace: other threads are running already")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SwarmStackError(f"cannot open the anchor's network namespace {path}: {e.strerror}") from e
    try:
        setns = getattr(os, "setns", None)  # Python 3.12+
        if setns is not None:
            setns(fd, CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise SwarmStackError(f"cannot enter the network namespace {path}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def bind_network_namespace(pid: int, path: Path) -> None:
    """Pin the network namespace of ``pid`` at ``path`` (a bind mount, as ``ip netns attach`` makes), replacing
    one pinned there before, for the units' ``NetworkNamespacePath=``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["umount", str(path)], capture_output=True, check=False)  # a namespace pinned before
    path.touch(exist_ok=True)
    done = subprocess.run(
        ["mount", "--bind", f"/proc/{pid}/ns/net", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SwarmStackError(f"cannot pin the anchor's network namespace at {path}: {done.stderr.strip()}")
    _pid_file(path).write_text(f"{pid}\n")


def _pid_file(pin: Path) -> Path:
    return pin.with_name(pin.name + ".pid")


def pinned_anchor_pid(pin: Path) -> int | None:
    """The pid of the anchor whose namespace is pinned at ``pin``, if that process still has that namespace."""
    try:
        pid = int(_pid_file(pin).read_text().strip())
        same = os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(pin).st_ino
    except (OSError, ValueError):
        return None
    return pid if same else None


def follow_anchor(pid: int, on_gone: Callable[[], None]) -> None:
    """Call ``on_gone`` (from a daemon thread) once the anchor's process exits: the namespace the process runs
    in has no way out any more."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        on_gone()
        return

    def wait() -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll()
        os.close(fd)
        on_gone()

    threading.Thread(target=wait, name="anchor-follower", daemon=True).start()


def gateway_ports(host: str, port: int, tls: tuple[str, int] | None) -> tuple[Published, ...]:
    """What the anchor publishes: the gateway's address (and its HTTPS one) as given, same port inside."""
    ports = [Published(host, port)]
    if tls is not None:
        ports.append(Published(*tls))
    return tuple(ports)
