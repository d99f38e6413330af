"""netconf against the real kernel: a test bridge, test subnet and namespaces made (and removed) by the tests."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest
import uvloop

from netconf import (
    AddressInUseError,
    AddressInvalidError,
    BridgeMissingError,
    HostPort,
    NetConfig,
    NetnsBusyError,
    NetnsNotFoundError,
    Network,
    SubnetFullError,
    mac_for,
)
from netconf.firewall import list_rules
from tests.integration.netns.netns_helpers import (
    GATEWAY_PORT,
    MakeNetwork,
    StartServer,
    in_netns,
    ip_out,
    leftovers,
    tcp_ask,
    tcp_ask_from,
)

pytestmark = pytest.mark.netns

PORT = GATEWAY_PORT
FIRST_CONNECT_LIMIT_S = 0.1


async def test_ensure_bridge_sets_fixed_mac_address_and_rules_idempotently(network: Network) -> None:
    cfg = network.config
    status = await network.status()
    assert status.bridge is not None
    assert status.bridge.up
    assert status.bridge.mac == mac_for(cfg.bridge_ip)
    assert status.bridge.addresses == (IPv4Interface(f"{cfg.bridge_ip}/{cfg.subnet.prefixlen}"),)
    assert status.ip_forward
    rules = await list_rules(cfg.bridge)
    assert f"-t filter -A FORWARD -j PYFAASD-FWD-{cfg.bridge}" in rules
    assert f"-t nat -A PYFAASD-NAT-{cfg.bridge} -s {cfg.subnet} ! -o {cfg.bridge} -j MASQUERADE" in rules

    again = await network.ensure_bridge()
    assert not again.created
    assert again.index == status.bridge.index
    assert await list_rules(cfg.bridge) == rules  # nothing added twice


async def test_ensure_bridge_adopts_existing_bridge_with_other_mac(network: Network) -> None:
    cfg = network.config
    subprocess.run(["ip", "link", "set", cfg.bridge, "address", "0a:58:00:00:00:99", "down"], check=True)
    info = await network.ensure_bridge()
    assert not info.created
    assert info.up
    assert info.mac == mac_for(cfg.bridge_ip)


async def test_two_namespaces_reach_each_other_and_bridge_ip_first_connect_fast(
    network: Network, netns: Callable[[], str], serve: StartServer
) -> None:
    ns_a, ns_b = netns(), netns()
    # Servers listen before the namespaces are attached, so the first connect is the first packet on the wire.
    serve(ns_a, IPv4Address("0.0.0.0"), PORT, "a")
    serve(ns_b, IPv4Address("0.0.0.0"), PORT, "b")
    bridge_ip = network.config.bridge_ip
    serve(None, bridge_ip, PORT, "host")

    a = await network.connect(ns_a, "container-a")
    b = await network.connect(ns_b, "container-b")

    # Each is the first connection on its path after attach: no neighbour entry may be waited for.
    checks: dict[str, tuple[Callable[[], tuple[bytes, float]], bytes]] = {
        "host->a": (lambda: tcp_ask(a.ip, PORT), b"pong:a"),
        "a->bridge": (lambda: tcp_ask_from(ns_a, bridge_ip, PORT), b"pong:host"),
        "a->b": (lambda: tcp_ask_from(ns_a, b.ip, PORT), b"pong:b"),
        "b->a": (lambda: tcp_ask_from(ns_b, a.ip, PORT), b"pong:a"),
        "b->bridge": (lambda: tcp_ask_from(ns_b, bridge_ip, PORT), b"pong:host"),
    }
    timings: dict[str, float] = {}
    for label, (ask, expected) in checks.items():
        answer, timings[label] = ask()
        assert answer == expected, label
    assert max(timings.values()) < FIRST_CONNECT_LIMIT_S, timings


def refused_from(ns: str, ip: IPv4Address, port: int) -> bool:
    """Whether a connect from ``ns`` is refused at once (a reject), rather than answered or left hanging."""
    try:
        tcp_ask_from(ns, ip, port)
    except ConnectionRefusedError:
        return True
    return False


async def test_functions_reach_the_gateway_port_and_allowed_ports_but_no_other_host_service(
    make_network: MakeNetwork, netns: Callable[[], str], serve: StartServer
) -> None:
    network = await make_network(host_ports=(HostPort(PORT + 1),))
    ns = netns()
    bridge_ip = network.config.bridge_ip
    # Host services bound to every address, as a database or an admin panel on a VPS often are.
    for port in (PORT, PORT + 1, PORT + 2):
        serve(None, IPv4Address("0.0.0.0"), port, f"host{port}")
    await network.connect(ns, "c1")

    assert tcp_ask_from(ns, bridge_ip, PORT)[0] == f"pong:host{PORT}".encode()  # the gateway's port
    assert tcp_ask_from(ns, bridge_ip, PORT + 1)[0] == f"pong:host{PORT + 1}".encode()  # allowed by the setting
    assert refused_from(ns, bridge_ip, PORT + 2)  # any other host service: refused at once, not hanging
    assert tcp_ask(bridge_ip, PORT + 2)[0] == f"pong:host{PORT + 2}".encode()  # the host itself still can
    rules = (await network.status()).rules
    assert any(line.startswith("nft ") and "reject" in line for line in rules), rules


async def test_functions_do_not_reach_other_bridges(
    make_network: MakeNetwork, netns: Callable[[], str], serve: StartServer
) -> None:
    ours, other = await make_network(), await make_network()  # the other stands for docker0 or a libvirt bridge
    ns_ours, ns_other = netns(), netns()
    serve(ns_other, IPv4Address("0.0.0.0"), PORT, "other")
    serve(ns_ours, IPv4Address("0.0.0.0"), PORT, "ours")
    mine = await ours.connect(ns_ours, "c1")
    theirs = await other.connect(ns_other, "c2")

    assert refused_from(ns_ours, theirs.ip, PORT)
    assert refused_from(ns_other, mine.ip, PORT)  # each bridge keeps its functions to itself
    assert tcp_ask(theirs.ip, PORT)[0] == b"pong:other"  # the host reaches both


async def test_isolated_functions_reach_the_gateway_but_not_each_other(
    make_network: MakeNetwork, netns: Callable[[], str], serve: StartServer
) -> None:
    network = await make_network(isolate_functions=True)
    ns_a, ns_b = netns(), netns()
    serve(ns_a, IPv4Address("0.0.0.0"), PORT, "a")
    serve(ns_b, IPv4Address("0.0.0.0"), PORT, "b")
    bridge_ip = network.config.bridge_ip
    serve(None, bridge_ip, PORT, "host")
    a = await network.connect(ns_a, "a")
    b = await network.connect(ns_b, "b")

    assert tcp_ask_from(ns_a, bridge_ip, PORT)[0] == b"pong:host"
    assert tcp_ask(b.ip, PORT)[0] == b"pong:b"
    # Port isolation drops the frames (ARP included): no answer at all.
    with pytest.raises(TimeoutError):
        in_netns(ns_a, lambda: tcp_ask(b.ip, PORT, timeout=0.5))
    with pytest.raises(TimeoutError):
        in_netns(ns_b, lambda: tcp_ask(a.ip, PORT, timeout=0.5))


async def test_attach_sets_address_mac_route_neighbours_and_no_ipv6(network: Network, netns: Callable[[], str]) -> None:
    ns = netns()
    cfg = network.config
    att = await network.connect(ns, "c1")
    assert att.created
    assert att.ip == cfg.subnet.network_address + 2
    assert len(att.host_ifname) <= 15

    link = json.loads(ip_out(ns, "-j", "addr", "show", "eth0"))[0]
    assert link["address"] == mac_for(att.ip)
    assert [(a["family"], a["local"], a["prefixlen"]) for a in link["addr_info"]] == [
        ("inet", str(att.ip), cfg.subnet.prefixlen)
    ]
    assert f"default via {cfg.bridge_ip} dev eth0" in ip_out(ns, "route")
    assert f"{cfg.bridge_ip} dev eth0 lladdr {cfg.bridge_mac} PERMANENT" in ip_out(ns, "neigh")
    assert f"{att.ip} lladdr {att.mac} PERMANENT" in ip_out(None, "neigh", "show", "dev", cfg.bridge)
    disabled = in_netns(ns, lambda: Path("/proc/sys/net/ipv6/conf/all/disable_ipv6").read_text().strip())
    assert disabled == "1"
    host_port = json.loads(ip_out(None, "-j", "link", "show", att.host_ifname))[0]
    assert host_port["master"] == cfg.bridge
    assert "UP" in host_port["flags"]


async def test_attach_twice_is_noop(network: Network, netns: Callable[[], str]) -> None:
    ns = netns()
    first = await network.connect(ns, "c1")
    before = (ip_out(ns, "-d", "addr"), ip_out(ns, "route"), ip_out(None, "-o", "link", "show", first.host_ifname))
    second = await network.attach(ns, first.ip)
    third = await network.connect(ns, "c1")
    assert not second.created
    assert not third.created
    assert second.ip == third.ip == first.ip
    after = (ip_out(ns, "-d", "addr"), ip_out(ns, "route"), ip_out(None, "-o", "link", "show", first.host_ifname))
    assert after == before
    assert [a.owner for a in await network.allocations()] == ["c1"]


async def test_attach_by_pid_reaches_process_netns(network: Network, netns: Callable[[], str]) -> None:
    ns = netns()
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "30"])
    try:
        # `ip netns exec` enters the namespace, then execs sleep: wait until the process is in it.
        for _ in range(200):
            if _same_ns(proc.pid, ns):
                break
            await asyncio.sleep(0.01)
        att = await network.connect(proc.pid, "by-pid")
        assert att.netns == f"/proc/{proc.pid}/ns/net"
        assert str(att.ip) in ip_out(ns, "addr", "show", "eth0")
    finally:
        proc.kill()
        proc.wait()


def _same_ns(pid: int, ns: str) -> bool:
    return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino


async def test_detach_removes_link_and_frees_address(network: Network, netns: Callable[[], str]) -> None:
    ns = netns()
    att = await network.connect(ns, "c1")
    assert await network.detach(att.ip)
    assert "eth0" not in ip_out(ns, "link")
    assert att.host_ifname not in ip_out(None, "link")
    assert str(att.ip) not in ip_out(None, "neigh", "show", "dev", network.config.bridge)
    assert await network.allocations() == []
    assert not await network.detach(att.ip)  # again: nothing to do, no error
    again = await network.connect(ns, "c1")  # the namespace can be attached afresh
    assert again.created


async def test_attach_same_ip_into_second_netns_raises_address_in_use(
    network: Network, netns: Callable[[], str]
) -> None:
    ns_a, ns_b = netns(), netns()
    att = await network.connect(ns_a, "a")
    with pytest.raises(AddressInUseError):
        await network.attach(ns_b, att.ip)
    assert "eth0" not in ip_out(ns_b, "link")
    assert str(att.ip) in ip_out(ns_a, "addr", "show", "eth0")  # the first attachment is intact


async def test_attach_into_netns_with_foreign_eth0_raises_netns_busy(
    network: Network, netns: Callable[[], str]
) -> None:
    ns = netns()
    subprocess.run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "other"], check=True)
    with pytest.raises(NetnsBusyError):
        await network.connect(ns, "c1")
    assert await network.allocations() == []  # connect released what it allocated
    assert (await network.status()).bridge.ports == ()  # type: ignore[union-attr]


async def test_attach_errors_name_the_problem(
    network: Network, netns: Callable[[], str], make_config: Callable[..., NetConfig]
) -> None:
    ns = netns()
    with pytest.raises(NetnsNotFoundError):
        await network.attach("/run/netns/pft-does-not-exist", network.config.subnet.network_address + 5)
    with pytest.raises(NetnsNotFoundError):
        await network.attach(2**22 + 12345, network.config.subnet.network_address + 5)  # no such PID
    with pytest.raises(AddressInvalidError):
        await network.attach(ns, network.config.bridge_ip)
    with pytest.raises(AddressInvalidError):
        await network.attach(ns, network.config.subnet.broadcast_address)
    no_bridge = Network(make_config())
    with pytest.raises(BridgeMissingError):
        await no_bridge.attach(ns, no_bridge.config.subnet.network_address + 2)
    assert "eth0" not in ip_out(ns, "link")


async def test_full_subnet_raises_subnet_full_error_and_leaves_nothing(
    make_network: MakeNetwork, netns: Callable[[], str]
) -> None:
    network = await make_network(prefixlen=29)  # 5 usable addresses
    namespaces = [netns() for _ in range(6)]
    for i, ns in enumerate(namespaces[:5]):
        await network.connect(ns, f"c{i}")
    with pytest.raises(SubnetFullError, match=str(network.config.subnet)):
        await network.connect(namespaces[5], "c5")
    assert "eth0" not in ip_out(namespaces[5], "link")
    assert len(await network.allocations()) == 5


async def test_restart_keeps_allocations_and_reattach_is_noop(network: Network, netns: Callable[[], str]) -> None:
    ns = netns()
    att = await network.connect(ns, "c1")
    restarted = Network(network.config)  # a new provider process
    assert [(a.ip, a.owner) for a in await restarted.allocations()] == [(att.ip, "c1")]
    again = await restarted.connect(ns, "c1")
    assert again.ip == att.ip
    assert not again.created


async def test_down_leaves_no_link_rule_chain_or_allocation(
    make_network: MakeNetwork, netns: Callable[[], str]
) -> None:
    network = await make_network()
    cfg = network.config
    ns_a, ns_b = netns(), netns()
    attached = [await network.connect(ns_a, "a"), await network.connect(ns_b, "b")]
    assert leftovers(cfg.bridge)

    await network.down()

    assert leftovers(cfg.bridge) == []
    host_links = ip_out(None, "link")  # only this test's host ends: a real install may be running beside it
    assert all(f" {a.host_ifname}@" not in host_links for a in attached)
    assert "eth0" not in ip_out(ns_a, "link")
    assert not cfg.ipam_path.exists()
    status = await network.status()
    assert status.bridge is None
    assert status.rules == ()
    assert status.allocations == ()
    await network.down()  # idempotent


def test_network_works_under_uvloop(make_config: Callable[..., NetConfig], netns: Callable[[], str]) -> None:
    """pyroute2 fails under uvloop (svinota/pyroute2#1335); netconf's worker threads make it work anyway."""
    network = Network(make_config())
    ns = netns()

    async def scenario() -> IPv4Address:
        try:
            await network.ensure_bridge()
            att = await network.connect(ns, "c1")
            return att.ip
        finally:
            await network.down()

    ip = uvloop.run(scenario())
    assert ip == network.config.subnet.network_address + 2
    assert leftovers(network.config.bridge) == []


def test_cli_up_status_down(make_config: Callable[..., NetConfig]) -> None:
    cfg = make_config()
    env = {
        **os.environ,
        "PYFAASD_BRIDGE": cfg.bridge,
        "PYFAASD_SUBNET": str(cfg.subnet),
        "PYFAASD_STATE_DIR": str(cfg.state_dir),
    }

    def cli(*args: str) -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, "-m", "netconf", *args, "--json"], env=env, capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    try:
        up = cli("up")
        assert up["present"] is True
        assert up["addresses"] == [f"{cfg.bridge_ip}/{cfg.subnet.prefixlen}"]
        rules: list[str] = up["rules"]  # type: ignore[assignment]
        assert len([r for r in rules if r.startswith("-t ")]) == 8  # iptables: 2 jumps, 2 chains, 4 rules
        assert f"nft table ip pyfaasd-{cfg.bridge} {{" in rules
        assert cli("status") == up
        down = cli("down")
        assert down["present"] is False
        assert down["rules"] == []
    finally:
        subprocess.run([sys.executable, "-m", "netconf", "down"], env=env, capture_output=True, check=False)
    assert leftovers(cfg.bridge) == []
