"""What the Swarm tests share: the docker CLI, a swarm only a test made (and leaves), an overlay's removal, the
stop of the processes a test started, and the whole stack on a swarm (``pyfaasd up --backend swarm``) for the
e2e tests run against both backends.

``docker swarm init`` changes the engine for everyone on the machine, so a test makes its swarm only on an engine
in none (else it skips) and leaves it afterwards, removing ``docker_gwbridge`` too when the init made it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.provider_harness import ProviderProcess

GWBRIDGE = "docker_gwbridge"
ADVERTISE_ADDR = "127.0.0.1"


def docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def require_no_swarm(maker: str) -> bool:
    """Skip unless the engine is in no swarm (``maker`` says who would make one); whether docker_gwbridge exists
    already (then leaving keeps it)."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}")
    if state != "inactive":
        pytest.skip(f"this engine is already in a swarm ({state}); the test only uses a swarm {maker} makes")
    return GWBRIDGE in docker("network", "ls", "--format", "{{.Name}}").split()


def leave_swarm(had_gwbridge: bool) -> None:
    docker("swarm", "leave", "--force", check=False)
    if not had_gwbridge:  # swarm init made it and leaving keeps it
        docker("network", "rm", GWBRIDGE, check=False)


def remove_overlay(network: str) -> None:
    """Wait for the task containers of the stack on ``network`` to go (removed services drain, then SIGTERM: up to
    60 s, then they are removed by force), then remove the overlay (up to 30 s: it goes once they are gone)."""
    label = f"label=com.pyfaasd.swarm-network={network}"
    deadline = time.monotonic() + 60
    while docker("ps", "-aq", "--filter", label, check=False):
        if time.monotonic() > deadline:
            for left in docker("ps", "-aq", "--filter", label).split():
                docker("rm", "-f", left, check=False)
            break
        time.sleep(0.5)
    deadline = time.monotonic() + 30
    while network in docker("network", "ls", "--format", "{{.Name}}").split() and time.monotonic() < deadline:
        docker("network", "rm", network, check=False)
        time.sleep(0.5)


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], wait_s: float) -> None:
    """SIGTERM to all, then wait for each up to ``wait_s``, SIGKILL the ones still running."""
    started = list(processes)
    for proc in started:
        proc.terminate()
    for proc in started:
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def gwbridge_address() -> str:
    """The host's address on docker_gwbridge: where a process in a container's (or the anchor's) namespace on the
    overlay reaches the host."""
    return docker("network", "inspect", GWBRIDGE, "--format", "{{(index .IPAM.Config 0).Gateway}}")


def remove_swarm_stack(network: str, *, overlay: bool = True) -> None:
    """Remove what a stack on ``network`` made on the swarm: its services (their task containers then drain and
    stop), its anchor and, unless ``overlay`` is False, the overlay once the task containers are gone. The swarm
    itself stays."""
    listed = docker("service", "ls", "-q", "--filter", f"label=com.pyfaasd.swarm-network={network}", check=False)
    if listed:
        docker("service", "rm", *listed.split(), check=False)
    docker("rm", "-f", f"pyfaasd-anchor-{network}", check=False)
    if overlay:
        remove_overlay(network)


READ_BUCKET = """
import asyncio, json, nats
from nats.js.errors import NoKeysError

async def main():
    client = await nats.connect("nats://127.0.0.1:4222")
    kv = await client.jetstream().key_value("pyfaasd_async")
    try:
        keys = await kv.keys()
    except NoKeysError:
        keys = []
    records = [json.loads((await kv.get(key)).value) for key in keys if key.startswith("call.")]
    await client.close()
    print(json.dumps(records))

asyncio.run(main())
"""


class SharedSwarm:
    """A single-node swarm the tests of a package share, made at the first :meth:`ensure` on an engine in none
    (else they skip) and left by :meth:`leave` (then made again by the next :meth:`ensure`).

    The overlays of the stacks on it are removed by :meth:`leave` too: an overlay goes only once the task
    containers on it have stopped (a removed service's tasks drain first, seconds each), so the tests hand them
    over (:meth:`remove_later`) and :meth:`leave` waits for all of them at once, not once per test."""

    def __init__(self) -> None:
        self._had_gwbridge: bool | None = None  # set while this object's swarm exists
        self._overlays: list[str] = []

    def remove_later(self, network: str) -> None:
        self._overlays.append(network)

    def ensure(self) -> None:
        if self._had_gwbridge is not None:
            return
        had_gwbridge = require_no_swarm("the e2e tests")
        docker("swarm", "init", "--advertise-addr", ADVERTISE_ADDR)
        self._had_gwbridge = had_gwbridge

    def leave(self) -> None:
        for network in self._overlays:
            remove_overlay(network)
        self._overlays.clear()
        if self._had_gwbridge is not None:
            leave_swarm(self._had_gwbridge)
            self._had_gwbridge = None


@dataclass
class SwarmStack(ProviderProcess):
    """``pyfaasd up --backend swarm`` on a swarm that exists (:class:`SharedSwarm`), with an overlay and an anchor of
    its own: provider, gateway and nats-server run in the anchor's network namespace, the gateway is published on
    the host's loopback. The same interface as the docker backend's stack (the provider still writes the hosts file
    of the replicas it found ready, ``hosts``); the bridge and subnet settings are passed but unused."""

    network: str = field(default_factory=lambda: f"pfs{secrets.token_hex(4)}")
    swarm: SharedSwarm | None = None  # set: the overlay is handed over to it at cleanup

    @property
    def env(self) -> dict[str, str]:
        return {
            **super().env,
            "PYFAASD_BACKEND": "swarm",
            "PYFAASD_SWARM_NETWORK": self.network,
            "PYFAASD_SWARM_ADVERTISE_ADDR": ADVERTISE_ADDR,
            **self.extra_env,
        }

    @property
    def log_path(self) -> Path:
        return self.state_dir.parent / f"{self.network}-up.log"

    def _containers(self, *, running_only: bool = False) -> list[dict[str, str]]:
        """The task containers of this stack's functions (they carry the overlay's label, the anchor does not)."""
        args = [
            "ps",
            "--no-trunc",
            "--format",
            "{{json .}}",
            "--filter",
            f"label=com.pyfaasd.swarm-network={self.network}",
        ]
        args += ["--filter", "status=running"] if running_only else ["-a"]
        return [json.loads(line) for line in docker(*args).splitlines() if line.strip()]

    def anchor_pid(self) -> int:
        return int(docker("inspect", "-f", "{{.State.Pid}}", f"pyfaasd-anchor-{self.network}"))

    def queued_calls(self) -> list[dict[str, Any]]:
        """The async calls in the stack's JetStream bucket (gateway/jetstream_queue.py's records, as JSON), read by
        a client run in the anchor's network namespace, where the stack's nats-server listens on loopback."""
        done = subprocess.run(
            ["nsenter", f"--net=/proc/{self.anchor_pid()}/ns/net", sys.executable, "-c", READ_BUCKET],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        calls: list[dict[str, Any]] = json.loads(done.stdout)
        return calls

    def cleanup(self) -> None:
        if self.proc is not None:
            stop_processes([self.proc], 30)  # SIGTERM: up removes its anchor and stops its nats-server
            self.proc = None
        remove_swarm_stack(self.network, overlay=self.swarm is None)
        if self.swarm is not None:
            self.swarm.remove_later(self.network)
