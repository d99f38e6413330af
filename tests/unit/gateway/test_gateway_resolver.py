"""Following the hosts file: cheap polls, racy rewrites, round robin and refused replicas."""

from __future__ import annotations

import os
from pathlib import Path

from gateway import resolver as resolver_module
from gateway.resolver import HostsFile, Resolver
from tests.unit.gateway.conftest import set_hosts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(path: Path) -> tuple[Resolver, Clock]:
    resolver = Resolver(HostsFile(path))
    clock = Clock()
    resolver._clock = clock
    return resolver, clock


def reads(resolver: Resolver) -> int:
    assert isinstance(resolver.source, HostsFile)
    return resolver.source.reads


def test_a_missing_file_is_an_empty_table_until_it_appears(tmp_path: Path) -> None:
    resolver, _clock = make(tmp_path / "hosts")
    assert resolver.replicas("f.openfaas-fn") == ()
    set_hosts(tmp_path / "hosts", {"f.openfaas-fn": ["10.62.0.7"]})
    assert resolver.recheck("f.openfaas-fn") == ("10.62.0.7",)


def test_the_file_is_stat_polled_at_most_every_interval(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    set_hosts(path, {"f.openfaas-fn": ["10.62.0.7"]})
    resolver, clock = make(path)
    os.utime(path, ns=(0, 0))  # an old mtime: not racy
    resolver.refresh(force=True)
    count = reads(resolver)
    set_hosts(path, {"f.openfaas-fn": ["10.62.0.7", "10.62.0.8"]})
    assert resolver.replicas("f.openfaas-fn") == ("10.62.0.7",)  # not due yet
    clock.now += resolver_module.POLL_INTERVAL_S
    assert resolver.replicas("f.openfaas-fn") == ("10.62.0.7", "10.62.0.8")
    assert reads(resolver) == count + 1
    os.utime(path, ns=(0, 0))
    resolver.refresh(force=True)
    count = reads(resolver)
    for _ in range(5):
        clock.now += resolver_module.POLL_INTERVAL_S
        resolver.replicas("f.openfaas-fn")
    assert reads(resolver) == count  # unchanged and not racy: stat only, no read


def test_a_same_size_rewrite_within_the_same_tick_is_still_seen(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    set_hosts(path, {"f.openfaas-fn": ["10.62.0.7"]})
    resolver, _clock = make(path)
    stamp = os.stat(path)
    set_hosts(path, {"f.openfaas-fn": ["10.62.0.8"]})  # same size
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # and, as within one kernel tick, same mtime
    assert resolver.recheck("f.openfaas-fn") == ("10.62.0.8",)


def test_round_robin_skips_a_replica_that_refused_lately(tmp_path: Path) -> None:
    resolver, clock = make(tmp_path / "hosts")
    replicas = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    assert [resolver.pick("f", replicas) for _ in range(4)] == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]
    resolver.mark_refused("10.0.0.2")
    picked = [resolver.pick("f", replicas) for _ in range(6)]
    assert set(picked) == {"10.0.0.1", "10.0.0.3"}
    clock.now += resolver_module.REFUSED_HOLD_S
    assert "10.0.0.2" in {resolver.pick("f", replicas) for _ in range(3)}
    assert resolver.pick("f", replicas, avoid="10.0.0.1") != "10.0.0.1"
    resolver.mark_refused("10.0.0.1")
    assert resolver.pick("g", ("10.0.0.1",)) == "10.0.0.1"  # the only one: tried anyway


def test_functions_lists_name_namespace_entries_only(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    set_hosts(path, {"f.openfaas-fn": ["10.62.0.7", "10.62.0.8"], "g.dev": ["10.62.0.9"]})
    resolver, _ = make(path)
    assert dict(resolver.functions()) == {"f.openfaas-fn": 2, "g.dev": 1}  # no localhost, gateway, or bare f
