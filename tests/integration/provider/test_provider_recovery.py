"""Recovery: a killed provider, a killed or restarted replica, a 'reboot' (every container stopped)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import free_port
from tests.integration.provider.conftest import HELLO
from tests.provider_harness import ProviderProcess, get, wait_for

pytestmark = pytest.mark.docker

MakeProvider = Callable[..., ProviderProcess]


def deploy(provider: ProviderProcess, name: str, replicas: int = 1) -> list[str]:
    reply = provider.call("POST", "/system/functions", {"service": name, "image": HELLO})
    assert reply.status == 202, reply.text
    if replicas != 1:
        reply = provider.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": replicas})
        assert reply.status == 200, reply.text
    ips = provider.hosts(name)
    assert len(ips) == replicas
    return ips


def serves(ips: list[str]) -> bool:
    try:
        return all(get(f"http://{ip}:8080/?name=r", timeout=3).status == 200 for ip in ips)
    except OSError:
        return False


def test_killed_provider_restarts_with_same_functions_and_ips(make_provider: MakeProvider, name: str) -> None:
    provider = make_provider()
    ips = deploy(provider, name, replicas=2)
    other = f"{name}z"
    deploy(provider, other)
    provider.call("POST", f"/system/scale-function/{other}", {"serviceName": other, "replicas": 0})
    containers = {c["ID"] for c in provider.containers()}

    assert provider.stop(signal.SIGKILL) == -signal.SIGKILL
    provider.start()

    assert sorted(provider.hosts(name)) == sorted(ips)
    assert serves(ips)
    assert {c["ID"] for c in provider.containers()} == containers  # nothing duplicated, nothing lost
    listed = {f["name"]: f for f in provider.call("GET", "/system/functions").json()}
    assert (listed[name]["replicas"], listed[name]["availableReplicas"]) == (2, 2)
    assert "replicas" not in listed[other]  # scaled to zero stays at zero
    assert provider.hosts(other) == []
    assert provider.stop(signal.SIGTERM) == 0
    assert len(provider.containers(running_only=True)) == 2  # functions keep running without the provider


def test_docker_kill_brings_the_replica_back(make_provider: MakeProvider, name: str) -> None:
    provider = make_provider()
    [ip] = deploy(provider, name)
    [container] = provider.containers()
    subprocess.run(["docker", "kill", container["ID"]], capture_output=True, check=True)
    wait_for(lambda: provider.hosts(name) == [], timeout=5, what="the dead replica to leave the hosts file")
    wait_for(lambda: provider.hosts(name) == [ip], timeout=20, what="the replica to come back")
    assert serves([ip])
    assert "replica_died" in provider.log_tail(200)


def test_docker_restart_reattaches_the_network(make_provider: MakeProvider, name: str) -> None:
    provider = make_provider()
    [ip] = deploy(provider, name)
    [container] = provider.containers()
    subprocess.run(["docker", "restart", "-t", "2", container["ID"]], capture_output=True, check=True)
    # A restarted container has a new network namespace: it answers at its IP only once re-attached.
    wait_for(lambda: provider.hosts(name) == [ip] and serves([ip]), timeout=20, what="re-attached replica")
    status = provider.call("GET", f"/system/function/{name}").json()
    assert status["availableReplicas"] == 1


def test_reboot_like_stop_of_everything_is_recovered(make_provider: MakeProvider, name: str) -> None:
    provider = make_provider()
    ips = deploy(provider, name, replicas=2)
    assert provider.stop(signal.SIGTERM) == 0
    ids = [c["ID"] for c in provider.containers()]
    subprocess.run(["docker", "stop", "-t", "1", *ids], capture_output=True, check=True)
    assert provider.containers(running_only=True) == []

    provider.start()
    assert sorted(provider.hosts(name)) == sorted(ips)
    assert serves(ips)
    assert {c["ID"] for c in provider.containers()} == set(ids)


def test_oom_killed_replica_is_restarted_and_logged(make_provider: MakeProvider, name: str) -> None:
    provider = make_provider()
    reply = provider.call("POST", "/system/functions", {"service": name, "image": HELLO, "limits": {"memory": "32Mi"}})
    assert reply.status == 202, reply.text
    [ip] = provider.hosts(name)
    [container] = provider.containers()
    # Allocate far beyond the limit inside the container: the kernel's OOM killer ends it.
    subprocess.run(
        [
            "docker",
            "exec",
            container["ID"],
            "python3",
            "-c",
            "x = bytearray(256 * 1024 * 1024); x[::4096] = b'x' * len(x[::4096])",
        ],
        capture_output=True,
        check=False,
    )
    wait_for(lambda: "replica_oom_killed" in provider.log_tail(300), timeout=10, what="the OOM kill to be logged")
    wait_for(lambda: provider.hosts(name) == [ip] and serves([ip]), timeout=20, what="the replica back")


def test_a_replica_killed_for_memory_at_start_is_reported(make_provider: MakeProvider, name: str) -> None:
    provider = make_provider()
    reply = provider.call("POST", "/system/functions", {"service": name, "image": HELLO, "limits": {"memory": "6Mi"}})
    assert reply.status == 422, reply.text
    assert "more memory than its limit" in reply.text
    assert provider.containers() == []


def test_a_second_provider_on_the_same_state_dir_stops_before_touching_anything(make_provider: Any) -> None:
    first = make_provider()
    hosts = first.state_dir / "hosts"
    before = hosts.stat().st_mtime_ns
    env = {**first.env, "PYFAASD_PROVIDER_ADDR": f"127.0.0.1:{free_port()}"}
    second = subprocess.run(
        [sys.executable, "-m", "provider"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert second.returncode == 1
    assert first.proc is not None
    assert f"another pyfaasd provider (pid {first.proc.pid}) uses the state dir" in second.stdout + second.stderr
    assert hosts.stat().st_mtime_ns == before  # no recovery ran: the hosts file was not rewritten
    assert get(f"{first.url}/healthz").status == 200
