"""What the Swarm tests share: the docker CLI, a swarm only a test made (and leaves), an overlay's removal and the
stop of the processes a test started.

``docker swarm init`` changes the engine for everyone on the machine, so a test makes its swarm only on an engine
in none (else it skips) and leaves it afterwards, removing ``docker_gwbridge`` too when the init made it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable

import pytest

GWBRIDGE = "docker_gwbridge"


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
