"""IPAM: allocation, release, reconcile, full subnet, persistence across restarts and processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from netconf.errors import (
    AddressInvalidError,
    ConfigError,
    IpamStateError,
    OwnerInvalidError,
    SubnetChangedError,
    SubnetFullError,
)
from netconf.ipam import Allocation, Ipam

SMALL = IPv4Network("192.0.2.0/29")  # .0 network, .1 bridge, .2-.6 usable, .7 broadcast


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "ipam" / "pft0.json"


def ips(*last_octets: int) -> list[IPv4Address]:
    return [IPv4Address(f"192.0.2.{n}") for n in last_octets]


def test_allocate_empty_store_starts_after_bridge_ip(store: Path) -> None:
    assert Ipam(store, SMALL).allocate("a") == IPv4Address("192.0.2.2")


def test_allocate_whole_subnet_never_hands_out_network_bridge_or_broadcast(store: Path) -> None:
    ipam = Ipam(store, SMALL)
    got = [ipam.allocate(f"c{i}") for i in range(ipam.capacity)]
    assert got == ips(2, 3, 4, 5, 6)
    assert ipam.capacity == 5


def test_allocate_same_owner_returns_same_address(store: Path) -> None:
    ipam = Ipam(store, SMALL)
    first = ipam.allocate("a")
    ipam.allocate("b")
    assert ipam.allocate("a") == first
    assert len(ipam.allocations()) == 2


def test_allocate_full_subnet_raises_subnet_full_error(store: Path) -> None:
    ipam = Ipam(store, SMALL)
    for i in range(5):
        ipam.allocate(f"c{i}")
    with pytest.raises(SubnetFullError, match=r"192\.0\.2\.0/29 is full"):
        ipam.allocate("one-too-many")
    assert len(ipam.allocations()) == 5  # the failed attempt changed nothing


def test_allocate_after_release_reuses_address_only_after_wrapping(store: Path) -> None:
    ipam = Ipam(store, SMALL)
    for i in range(3):
        ipam.allocate(f"c{i}")  # .2 .3 .4
    assert ipam.release(IPv4Address("192.0.2.3")) == "c1"
    assert [ipam.allocate("d"), ipam.allocate("e"), ipam.allocate("f")] == ips(5, 6, 3)


def test_release_unknown_address_returns_none(store: Path) -> None:
    assert Ipam(store, SMALL).release(IPv4Address("192.0.2.5")) is None


@pytest.mark.parametrize(
    "address",
    ["192.0.2.0", "192.0.2.1", "192.0.2.7", "198.51.100.3"],
    ids=["network", "bridge", "broadcast", "outside"],
)
def test_release_unusable_address_raises_address_invalid_error(store: Path, address: str) -> None:
    with pytest.raises(AddressInvalidError):
        Ipam(store, SMALL).release(IPv4Address(address))


def test_release_owner_frees_its_address(store: Path) -> None:
    ipam = Ipam(store, SMALL)
    ip = ipam.allocate("a")
    assert ipam.release_owner("a") == ip
    assert ipam.release_owner("a") is None
    assert ipam.lookup("a") is None
    assert ipam.allocations() == []


@pytest.mark.parametrize("owner", ["", "   "], ids=["empty", "blank"])
def test_allocate_bad_owner_raises_owner_invalid_error(store: Path, owner: str) -> None:
    with pytest.raises(OwnerInvalidError):
        Ipam(store, SMALL).allocate(owner)


def test_reconcile_frees_unknown_owners_and_keeps_known(store: Path) -> None:
    ipam = Ipam(store, SMALL)
    for owner in ("keep1", "gone1", "keep2", "gone2"):
        ipam.allocate(owner)
    freed = ipam.reconcile(["keep1", "keep2", "never-allocated"])
    assert freed == [Allocation(IPv4Address("192.0.2.3"), "gone1"), Allocation(IPv4Address("192.0.2.5"), "gone2")]
    assert [a.owner for a in ipam.allocations()] == ["keep1", "keep2"]
    assert ipam.reconcile(["keep1", "keep2"]) == []


def test_restart_keeps_allocations(store: Path) -> None:
    before = Ipam(store, SMALL)
    a, b = before.allocate("a"), before.allocate("b")
    after = Ipam(store, SMALL)  # a restarted provider
    assert after.allocations() == [Allocation(a, "a"), Allocation(b, "b")]
    assert after.allocate("a") == a
    assert after.allocate("c") == IPv4Address("192.0.2.4")  # continues round-robin after b


def test_store_is_versioned_json_with_subnet(store: Path) -> None:
    Ipam(store, SMALL).allocate("a")
    doc = json.loads(store.read_text())
    assert doc == {"version": 1, "subnet": "192.0.2.0/29", "last": "192.0.2.2", "allocations": {"192.0.2.2": "a"}}
    assert not list(store.parent.glob("*.tmp"))


def test_change_by_another_instance_is_seen(store: Path) -> None:
    one, two = Ipam(store, SMALL), Ipam(store, SMALL)
    assert one.allocate("a") == IPv4Address("192.0.2.2")
    assert two.allocate("b") == IPv4Address("192.0.2.3")  # two reads one's write
    assert one.allocate("c") == IPv4Address("192.0.2.4")  # one's cache is invalidated by two's write
    assert one.lookup("b") == IPv4Address("192.0.2.3")


def test_store_of_other_subnet_raises_subnet_changed_error(store: Path) -> None:
    Ipam(store, SMALL).allocate("a")
    with pytest.raises(SubnetChangedError, match=r"192\.0\.2\.0/29"):
        Ipam(store, IPv4Network("192.0.2.0/28")).allocations()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"version": 2}',
        '{"version": 1, "subnet": "192.0.2.0/29", "allocations": []}',
        '{"version": 1, "subnet": "192.0.2.0/29", "allocations": {"192.0.2.1": "bridge"}}',
        '{"version": 1, "subnet": "192.0.2.0/29", "allocations": {"192.0.2.2": "a", "192.0.2.3": "a"}}',
    ],
    ids=["garbage", "version", "allocations-type", "bridge-ip", "duplicate-owner"],
)
def test_corrupt_store_raises_ipam_state_error(store: Path, content: str) -> None:
    store.parent.mkdir(parents=True)
    store.write_text(content)
    with pytest.raises(IpamStateError):
        Ipam(store, SMALL).allocate("x")


def test_clear_removes_store_and_lock(store: Path) -> None:
    ipam = Ipam(store, SMALL)
    ipam.allocate("a")
    ipam.clear()
    assert not store.parent.exists()
    assert ipam.allocations() == []
    assert not store.parent.exists()  # reading does not recreate anything


def test_subnet_without_room_raises_config_error(store: Path) -> None:
    with pytest.raises(ConfigError):
        Ipam(store, IPv4Network("192.0.2.0/31"))


_WORKER = """
import sys
from ipaddress import IPv4Network
from pathlib import Path
from netconf.ipam import Ipam
ipam = Ipam(Path(sys.argv[1]), IPv4Network("10.99.0.0/24"))
for i in range(int(sys.argv[3])):
    print(ipam.allocate(f"{sys.argv[2]}-{i}"), flush=True)
"""


def test_allocate_from_concurrent_processes_never_duplicates(store: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(store), f"p{n}", "40"], stdout=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    handed_out = [ip for out in outputs for ip in out]
    assert len(handed_out) == 120
    assert len(set(handed_out)) == 120
    assert len(Ipam(store, IPv4Network("10.99.0.0/24")).allocations()) == 120


def _nearly_full_16(store: Path, free: list[int]) -> IPv4Network:
    subnet = IPv4Network("10.99.0.0/16")
    base = int(subnet.network_address)
    allocations = {str(IPv4Address(base + off)): f"fn-{off}" for off in range(2, 65535) if off not in free}
    store.parent.mkdir(parents=True)
    doc = {"version": 1, "subnet": str(subnet), "last": "10.99.200.0", "allocations": allocations}
    store.write_text(json.dumps(doc))
    return subnet


def test_allocate_nearly_full_16_finds_scattered_free_addresses_quickly(store: Path) -> None:
    free = [300, 40000, 60000]
    subnet = _nearly_full_16(store, free)
    ipam = Ipam(store, subnet)
    ipam.lookup("warm-up")  # first parse of the 65k-entry store
    started = time.perf_counter()
    got = [ipam.allocate(f"new{i}") for i in range(3)]
    per_allocation = (time.perf_counter() - started) / 3
    base = int(subnet.network_address)
    assert got == [IPv4Address(base + 60000), IPv4Address(base + 300), IPv4Address(base + 40000)]
    with pytest.raises(SubnetFullError):
        ipam.allocate("full")
    assert per_allocation < 0.5  # dominated by rewriting a 65k-entry store; the search itself is microseconds
