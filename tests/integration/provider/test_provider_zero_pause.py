"""Scale to zero against the real engine with ``PYFAASD_ZERO_PAUSE``: the last replica is paused (reported as no
replica, out of the hosts file), a request wakes it, it is stopped after the window, removed on delete, never
woken for an updated spec, kept across a provider restart and attached again when the bridge is rebuilt."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest

from netconf.network import host_ifname
from tests.integration.provider.conftest import HELLO
from tests.provider_harness import ProviderProcess, get, http, wait_for
from tests.stack_fixtures import MakeStack

pytestmark = pytest.mark.docker

MakeProvider = Callable[..., ProviderProcess]


def state_of(container_id: str) -> dict[str, Any] | None:
    """``docker inspect``'s State of the container; None when it does not exist."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{json .State}}", container_id], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(out.stdout)
    return found


def env_of(container_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{json .Config.Env}}", container_id], capture_output=True, text=True, check=True
    )
    found: list[str] = json.loads(out.stdout)
    return found


def deploy(provider: ProviderProcess, name: str, **fields: Any) -> None:
    reply = provider.call("POST", "/system/functions", {"service": name, "image": HELLO, **fields})
    assert reply.status == 202, reply.text


def scale(provider: ProviderProcess, name: str, replicas: int) -> None:
    reply = provider.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": replicas})
    assert reply.status == 200, reply.text


def replica_ids(provider: ProviderProcess, name: str) -> list[str]:
    return sorted(c["ID"] for c in provider.containers() if f"com.pyfaasd.function={name}" in c["Labels"])


def reported(provider: ProviderProcess, name: str) -> tuple[int, int]:
    """``replicas`` and ``availableReplicas`` of the function, in its list entry and in its own answer alike."""
    listed = next(f for f in provider.call("GET", "/system/functions").json() if f["name"] == name)
    own = provider.call("GET", f"/system/function/{name}").json()
    assert (listed.get("replicas", 0), listed.get("availableReplicas", 0)) == (
        own.get("replicas", 0),
        own.get("availableReplicas", 0),
    )
    return own.get("replicas", 0), own.get("availableReplicas", 0)


def paused_at_zero(provider: ProviderProcess, name: str) -> str:
    """The function is at zero with one paused container; its ID."""
    [cid] = replica_ids(provider, name)
    assert (state_of(cid) or {}).get("Paused"), state_of(cid)
    assert reported(provider, name) == (0, 0)
    assert provider.hosts(name) == []
    return cid


def test_a_paused_replica_counts_as_none_and_a_request_wakes_it(make_stack: MakeStack, name: str) -> None:
    stack = make_stack(PYFAASD_ZERO_PAUSE="5m")
    deploy(stack, name)
    [cid] = replica_ids(stack, name)
    [ip] = stack.hosts(name)

    scale(stack, name, 0)

    assert paused_at_zero(stack, name) == cid
    assert stack.containers(running_only=True) == []
    assert stack.allocations().get(ip) == cid  # its address is kept

    reply = http("GET", f"{stack.url}/function/{name}?name=wake", timeout=30)  # held until a replica is ready

    assert reply.status == 200, reply.text
    assert replica_ids(stack, name) == [cid]  # thawed, not started anew
    state = state_of(cid) or {}
    assert (state.get("Running"), state.get("Paused")) == (True, False)
    assert stack.hosts(name) == [ip]
    assert reported(stack, name) == (1, 1)


def test_after_the_window_the_replica_is_stopped_and_a_wake_starts_it(make_provider: MakeProvider, name: str) -> None:
    provider = make_provider(PYFAASD_ZERO_PAUSE="1s")
    deploy(provider, name)
    scale(provider, name, 0)
    cid = paused_at_zero(provider, name)

    wait_for(lambda: not (state_of(cid) or {}).get("Running", True), timeout=30, what="the paused replica stopped")

    assert replica_ids(provider, name) == [cid]  # kept as a stopped container
    assert reported(provider, name) == (0, 0)
    scale(provider, name, 1)
    [ip] = provider.hosts(name)
    assert get(f"http://{ip}:8080/?name=cold").status == 200


def test_delete_removes_a_paused_replica_and_its_address(make_provider: MakeProvider, name: str) -> None:
    provider = make_provider(PYFAASD_ZERO_PAUSE="5m")
    deploy(provider, name)
    scale(provider, name, 0)
    cid = paused_at_zero(provider, name)

    reply = provider.call("DELETE", "/system/functions", {"functionName": name})

    assert reply.status == 200, reply.text
    assert state_of(cid) is None
    assert cid not in provider.allocations().values()


def test_an_update_at_zero_never_wakes_the_paused_replica_of_the_old_spec(
    make_provider: MakeProvider, name: str
) -> None:
    provider = make_provider(PYFAASD_ZERO_PAUSE="5m")
    deploy(provider, name, envVars={"GENERATION": "old"})
    scale(provider, name, 0)
    old = paused_at_zero(provider, name)

    update = {"service": name, "image": HELLO, "envVars": {"GENERATION": "new"}}
    reply = provider.call("PUT", "/system/functions", update)
    assert reply.status == 202, reply.text
    wait_for(lambda: state_of(old) is None, what="the old paused replica removed")
    scale(provider, name, 1)

    [new] = replica_ids(provider, name)
    assert new != old
    assert "GENERATION=new" in env_of(new)
    [ip] = provider.hosts(name)
    assert get(f"http://{ip}:8080/?name=new").status == 200


def test_a_restarted_provider_keeps_the_paused_replica_and_wakes_it(make_provider: MakeProvider, name: str) -> None:
    provider = make_provider(PYFAASD_ZERO_PAUSE="5m")
    deploy(provider, name)
    [ip] = provider.hosts(name)
    scale(provider, name, 0)
    cid = paused_at_zero(provider, name)

    assert provider.stop(signal.SIGKILL) == -signal.SIGKILL
    provider.start()

    assert paused_at_zero(provider, name) == cid  # nothing orphaned, nothing started
    assert '"paused_replica_unattached"' not in provider.log_path.read_text()  # attached again while frozen
    scale(provider, name, 1)
    assert provider.hosts(name) == [ip]
    assert get(f"http://{ip}:8080/?name=again").status == 200
    assert replica_ids(provider, name) == [cid]


def test_a_rebuilt_bridge_gets_the_paused_replica_attached_again(make_provider: MakeProvider, name: str) -> None:
    provider = make_provider(PYFAASD_ZERO_PAUSE="5m")
    deploy(provider, name)
    [ip] = provider.hosts(name)
    scale(provider, name, 0)
    cid = paused_at_zero(provider, name)
    veth = host_ifname(IPv4Address(ip))

    subprocess.run(["ip", "link", "del", provider.bridge], check=True)

    def repaired() -> dict[str, Any] | None:
        for line in provider.log_path.read_text().splitlines():
            if '"bridge_repaired"' in line:
                found: dict[str, Any] = json.loads(line)
                return found
        return None

    repair = wait_for(repaired, timeout=20, what="the bridge repaired")
    assert repair["replicas_attached"] == 1  # the paused replica, frozen as it is
    ports = subprocess.run(
        ["ip", "-o", "link", "show", "master", provider.bridge], capture_output=True, text=True, check=True
    ).stdout
    assert f" {veth}@" in ports
    assert paused_at_zero(provider, name) == cid
    scale(provider, name, 1)
    assert provider.hosts(name) == [ip]
    assert get(f"http://{ip}:8080/?name=bridge").status == 200
