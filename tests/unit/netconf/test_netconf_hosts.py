"""The hosts file: exact format, tolerant parser, in-place rewrite, and what a concurrent reader sees."""

from __future__ import annotations

import os
import threading
import zlib
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netconf.errors import HostsFileError
from netconf.hosts import (
    END_MARKER,
    Replica,
    parse_hosts,
    read_hosts,
    render_hosts,
    write_hosts,
    write_hosts_content,
)

BRIDGE_IP = IPv4Address("10.62.0.1")


def replica(name: str, namespace: str, ip: str) -> Replica:
    return Replica(name, namespace, IPv4Address(ip))


REPLICAS = [
    replica("nodeinfo", "dev", "10.62.0.8"),
    replica("figlet", "openfaas-fn", "10.62.0.9"),
    replica("figlet", "openfaas-fn", "10.62.0.7"),
]


def test_render_hosts_exact_format() -> None:
    body = (
        "# pyfaasd hosts: written by the provider, do not edit\n"
        "127.0.0.1\tlocalhost\n"
        "10.62.0.1\tgateway provider\n"
        "10.62.0.8\tnodeinfo.dev\n"
        "10.62.0.7\tfiglet.openfaas-fn figlet\n"
        "10.62.0.9\tfiglet.openfaas-fn figlet\n"
    )
    assert render_hosts(BRIDGE_IP, REPLICAS) == f"{body}{END_MARKER}{zlib.crc32(body.encode()):08x}\n"


def test_render_hosts_no_replicas_has_only_fixed_lines() -> None:
    table = parse_hosts(render_hosts(BRIDGE_IP, []))
    assert table.complete
    assert dict(table.entries) == {
        "localhost": (IPv4Address("127.0.0.1"),),
        "gateway": (BRIDGE_IP,),
        "provider": (BRIDGE_IP,),
    }


def test_render_hosts_is_order_independent() -> None:
    assert render_hosts(BRIDGE_IP, REPLICAS) == render_hosts(BRIDGE_IP, reversed(REPLICAS))


@pytest.mark.parametrize(
    "bad",
    [
        replica("fig let", "openfaas-fn", "10.62.0.2"),
        replica("figlet", "ns#x", "10.62.0.2"),
        replica("", "a", "10.62.0.2"),
    ],
    ids=["space", "hash", "empty"],
)
def test_render_hosts_bad_name_raises_hosts_file_error(bad: Replica) -> None:
    with pytest.raises(HostsFileError):
        render_hosts(BRIDGE_IP, [bad])


def test_parse_hosts_rendered_file_maps_names_to_replica_ips() -> None:
    table = parse_hosts(render_hosts(BRIDGE_IP, REPLICAS))
    assert table.complete
    figlet = (IPv4Address("10.62.0.7"), IPv4Address("10.62.0.9"))
    assert table.lookup("figlet.openfaas-fn") == figlet
    assert table.lookup("figlet") == figlet
    assert table.lookup("nodeinfo.dev") == (IPv4Address("10.62.0.8"),)
    assert table.lookup("nodeinfo") == ()  # no bare alias outside the default namespace
    assert table.lookup("gateway") == (BRIDGE_IP,)


def test_parse_hosts_tolerates_comments_blanks_ipv6_and_garbage() -> None:
    text = (
        "# a comment\n"
        "\n"
        "   \t  \n"
        "10.0.0.1\tone  # trailing comment\n"
        "::1\tipv6-only\n"
        "garbage line here\n"
        "10.0.0.300\tbad-ip\n"
        "10.0.0.2\n"
        "10.0.0.2    one two\n"
        "10.0.0.1\tone\n"
    )
    table = parse_hosts(text)
    assert dict(table.entries) == {
        "one": (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")),
        "two": (IPv4Address("10.0.0.2"),),
    }
    assert not table.complete  # no end marker: not written by the provider


def test_parse_hosts_half_written_skips_unterminated_last_line() -> None:
    full = render_hosts(BRIDGE_IP, REPLICAS)
    cut = full[: full.index("10.62.0.7") + len("10.62.0.7\tfig")]
    table = parse_hosts(cut)
    assert not table.complete
    assert "fig" not in table.entries
    assert "figlet" not in table.entries
    assert table.lookup("nodeinfo.dev") == (IPv4Address("10.62.0.8"),)


def test_parse_hosts_ignores_old_tail_after_end_marker() -> None:
    old = render_hosts(BRIDGE_IP, REPLICAS)
    new = render_hosts(BRIDGE_IP, REPLICAS[:1])
    torn = new + old[len(new) :]  # written, not yet truncated
    assert parse_hosts(torn) == parse_hosts(new)
    assert parse_hosts(torn).complete


def test_parse_hosts_mixed_old_and_new_is_not_complete() -> None:
    old = render_hosts(BRIDGE_IP, [replica("aaaa", "dev", "10.62.0.2")])
    new = render_hosts(BRIDGE_IP, [replica("bbbb", "dev", "10.62.0.3")])
    assert len(old) == len(new)
    cut = new.index("bbbb") + 2  # a page boundary in the middle of the line that differs
    mixed = parse_hosts(new[:cut] + old[cut:])
    assert not mixed.complete


def test_write_hosts_creates_file_readable_by_all(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    assert write_hosts(path, BRIDGE_IP, REPLICAS)
    assert path.read_text() == render_hosts(BRIDGE_IP, REPLICAS)
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_hosts_rewrite_keeps_inode_and_truncates(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    write_hosts(path, BRIDGE_IP, REPLICAS)
    inode = path.stat().st_ino
    with open(path) as held:  # like the bind mount in a container: an open reference to the inode
        write_hosts(path, BRIDGE_IP, REPLICAS[:1])
        assert path.stat().st_ino == inode
        held.seek(0)
        assert held.read() == render_hosts(BRIDGE_IP, REPLICAS[:1])
    write_hosts(path, BRIDGE_IP, REPLICAS)
    assert path.stat().st_ino == inode
    assert path.read_text() == render_hosts(BRIDGE_IP, REPLICAS)


def test_write_hosts_unchanged_content_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    write_hosts(path, BRIDGE_IP, REPLICAS)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert not write_hosts(path, BRIDGE_IP, list(reversed(REPLICAS)))
    assert path.stat().st_mtime_ns == 1_000_000_000


def test_read_hosts_missing_file_is_empty(tmp_path: Path) -> None:
    table = read_hosts(tmp_path / "nope")
    assert dict(table.entries) == {}


def test_concurrent_reader_sees_old_or_new_content_never_a_mix(tmp_path: Path) -> None:
    """A writer flips between a long and a short file; readers must only ever see one or the other.

    ``read_hosts`` locks, so every read is complete and exact. A lock-free read may be torn, but then
    ``parse_hosts`` says so (``complete`` False); whatever it calls complete is exactly old or new.
    """
    path = tmp_path / "hosts"
    long_set = [replica(f"fn{i:03d}", "openfaas-fn", f"10.62.{i // 200}.{2 + i % 200}") for i in range(400)]
    short_set = [replica("solo", "dev", "10.62.9.9")]
    contents = [render_hosts(BRIDGE_IP, long_set), render_hosts(BRIDGE_IP, short_set)]
    assert len(contents[0]) > 4096 * 3  # several pages, so a torn read is possible
    expected = [parse_hosts(c).entries for c in contents]
    write_hosts_content(path, contents[0])
    stop = threading.Event()
    errors: list[str] = []
    counts = {"locked": 0, "lock_free": 0, "lock_free_complete": 0}

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            write_hosts_content(path, contents[i % 2])

    def locked_reader() -> None:
        while not stop.is_set():
            table = read_hosts(path)
            counts["locked"] += 1
            if not table.complete or table.entries not in expected:
                errors.append("locked read saw a mix")

    def lock_free_reader() -> None:
        while not stop.is_set():
            table = parse_hosts(path.read_text())
            counts["lock_free"] += 1
            if table.complete:
                counts["lock_free_complete"] += 1
                if table.entries not in expected:
                    errors.append("lock-free read was called complete but is a mix")

    threads = [threading.Thread(target=fn) for fn in (writer, locked_reader, lock_free_reader)]
    for t in threads:
        t.start()
    stop.wait(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert counts["locked"] > 50
    assert counts["lock_free_complete"] > 0
    assert path.stat().st_size in (len(contents[0]), len(contents[1]))
