"""Faults under a running stack that used to break functions for good (issue 20): each one noticed and repaired."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.helpers import free_port
from tests.provider_harness import http, wait_for
from tests.stack_fixtures import ECHO, MakeStack, docker_only

pytestmark = pytest.mark.docker


@docker_only("swarm: no bridge to delete, functions are on an overlay network Swarm keeps")
def test_a_bridge_deleted_under_running_functions_is_rebuilt_and_callers_fail_fast_meanwhile(
    make_stack: MakeStack, name: str
) -> None:
    stack = make_stack(PYFAASD_CONNECT_TIMEOUT="1s")
    assert stack.call("POST", "/system/functions", {"service": name, "image": ECHO}).status == 202
    wait_for(lambda: stack.hosts(name), what="the replica in the hosts file")
    url = f"{stack.url}/function/{name}"
    assert http("GET", url, timeout=10).status == 200
    container = stack.containers(running_only=True)[0]["ID"]
    ip = stack.hosts(name)[0]

    subprocess.run(["ip", "link", "del", stack.bridge], check=True)
    broken = time.monotonic()

    # Within seconds the provider says why it is unhealthy, or has already repaired the bridge; a caller that
    # meets the broken network gets a quick 503 rather than a 60 s hang.
    statuses = []
    while time.monotonic() - broken < 15:
        started = time.monotonic()
        reply = http("GET", url, timeout=10)
        statuses.append((reply.status, round(time.monotonic() - started, 2)))
        if reply.status == 200:
            break
        assert reply.status == 503, (reply.status, reply.text)
        assert time.monotonic() - started < 3, statuses
    assert statuses[-1][0] == 200, statuses
    repaired_after = time.monotonic() - broken
    assert repaired_after < 10, statuses
    print(f"\nbridge deleted → function answering again after {repaired_after:.2f}s; calls meanwhile: {statuses}")

    assert http("GET", f"{stack.url}/healthz").status == 200
    assert stack.containers(running_only=True)[0]["ID"] == container  # the same replica, not a new one
    assert stack.hosts(name) == [ip]
    assert "bridge_repaired" in stack.log_path.read_text()
    # A deploy after the repair works (it was a 500 BridgeMissingError before).
    other = f"{name}b"
    assert stack.call("POST", "/system/functions", {"service": other, "image": ECHO}).status == 202
    wait_for(lambda: http("GET", f"{stack.url}/function/{other}", timeout=10).status == 200, what="the new function")


PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(f"no answer: {e}")
"""


def reach(container: str, host: str, port: int) -> str:
    """What a connect from inside the function container ``container`` to host:port meets."""
    out = subprocess.run(
        ["docker", "exec", container, "python3", "-c", PROBE, host, str(port)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture
def host_listeners() -> Iterator[Callable[[], int]]:
    """Host services bound to 0.0.0.0 on free ports, as a database or an admin panel on a VPS often are."""
    sockets: list[socket.socket] = []

    def listen() -> int:
        sock = socket.socket()
        sock.bind(("0.0.0.0", 0))
        sock.listen(16)
        sockets.append(sock)
        return int(sock.getsockname()[1])

    yield listen
    for sock in sockets:
        sock.close()


@pytest.fixture
def container_on_docker0() -> Iterator[str]:
    """A container on Docker's default bridge; its IP."""
    name = f"pft-other-{secrets.token_hex(3)}"
    subprocess.run(["docker", "run", "-d", "--name", name, ECHO], check=True, capture_output=True)
    try:
        ip = wait_for(
            lambda: subprocess.run(
                ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip(),
            what="the container's IP",
        )
        yield str(ip)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


@docker_only(
    "swarm: functions are not confined to the gateway, each other and PYFAASD_FUNCTION_HOST_PORTS yet (no bridge, no "
    "nftables table on the overlay; docs/swarm.md, Not yet)"
)
def test_a_function_reaches_the_gateway_functions_and_allowed_ports_but_no_other_host_port_or_bridge(
    make_stack: MakeStack, name: str, host_listeners: Callable[[], int], container_on_docker0: str
) -> None:
    blocked, allowed = host_listeners(), host_listeners()
    stack = make_stack(gateway_host="0.0.0.0", PYFAASD_FUNCTION_HOST_PORTS=str(allowed))
    other = f"{name}b"
    for service in (name, other):
        assert stack.call("POST", "/system/functions", {"service": service, "image": ECHO}).status == 202
    wait_for(lambda: stack.hosts(name) and stack.hosts(other), what="both functions ready")
    inside = next(c["ID"] for c in stack.containers(running_only=True) if c["Names"].startswith(f"{name}."))
    bridge_ip = str(stack.subnet.network_address + 1)
    assert stack.gateway_port is not None

    assert reach(inside, "gateway", stack.gateway_port) == "open"
    assert reach(inside, other, 8080) == "open"  # another function by name: a documented feature
    assert reach(inside, bridge_ip, allowed) == "open"  # PYFAASD_FUNCTION_HOST_PORTS
    assert reach(inside, bridge_ip, blocked) == "refused"  # any other host service
    assert reach(inside, container_on_docker0, 8080) == "refused"  # another bridge
    assert reach(inside, "provider", stack.port) == "refused"  # the provider's API is behind the gateway


@docker_only(
    "swarm: PYFAASD_ISOLATE_FUNCTIONS (netconf/isolation.py) does not apply to the overlay yet (docs/swarm.md)"
)
def test_isolated_functions_reach_each_other_only_through_the_gateway(make_stack: MakeStack, name: str) -> None:
    stack = make_stack(gateway_host="0.0.0.0", PYFAASD_ISOLATE_FUNCTIONS="true")
    other = f"{name}b"
    for service in (name, other):
        assert stack.call("POST", "/system/functions", {"service": service, "image": ECHO}).status == 202
    wait_for(lambda: stack.hosts(name) and stack.hosts(other), what="both functions ready")
    inside = next(c["ID"] for c in stack.containers(running_only=True) if c["Names"].startswith(f"{name}."))

    assert reach(inside, other, 8080).startswith("no answer")
    assert reach(inside, "gateway", stack.gateway_port or 0) == "open"
    assert http("GET", f"{stack.url}/function/{other}", timeout=10).status == 200


def test_after_a_kill_9_functions_answer_before_the_provider_has_re_read_docker(
    make_stack: MakeStack, name: str, backend: str
) -> None:
    stack = make_stack()
    assert stack.call("POST", "/system/functions", {"service": name, "image": ECHO}).status == 202
    url = f"{stack.url}/function/{name}"
    wait_for(lambda: http("GET", url, timeout=10).status == 200, what="the function")
    assert stack.proc is not None
    stack.proc.kill()
    stack.proc.wait(10)

    stack.launch()

    # The gateway starts first and serves the hosts file that is there; the provider (its imports, the bridge,
    # Docker's containers) comes after, so the first 200 comes while /healthz is not yet 200.
    def answered() -> tuple[int, int] | None:
        try:
            status = http("GET", url, timeout=5).status
        except OSError:
            return None
        return (status, http("GET", f"{stack.url}/healthz", timeout=5).status) if status == 200 else None

    first = wait_for(answered, timeout=20, interval=0.005, what="the first 200 after the restart")
    if backend == "docker":  # swarm: the gateway finds the tasks through DNS, whenever the provider is ready
        assert first[1] != 200, "the provider had already recovered: the gateway did not serve ahead of it"
    wait_for(lambda: http("GET", f"{stack.url}/healthz").status == 200, what="the provider to recover")
    assert len(stack.containers()) == 1  # the same replica, adopted


def test_a_second_up_on_the_same_state_dir_exits_before_serving_anything(make_stack: MakeStack) -> None:
    first = make_stack()
    assert first.proc is not None
    other_gateway = free_port()
    env = {
        **first.env,
        "PYFAASD_GATEWAY_ADDR": f"127.0.0.1:{other_gateway}",
        "PYFAASD_PROVIDER_ADDR": f"127.0.0.1:{free_port()}",
    }
    second = subprocess.run(
        [sys.executable, "-m", "pyfaasd.cli", "up"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert second.returncode == 1
    assert f"another pyfaasd provider (pid {first.proc.pid}) uses the state dir" in second.stderr
    assert "listening" not in second.stdout  # its gateway never started (nor its dispatcher or autoscaler)
    assert http("GET", f"{first.url}/healthz").status == 200
