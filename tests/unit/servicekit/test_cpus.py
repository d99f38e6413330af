"""The default number of serving processes: CPU affinity, capped by the cgroup's quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from servicekit.cpus import available_cpus, cgroup_quota
from servicekit.settings import SettingError, workers_count

AFFINITY = len(os.sched_getaffinity(0))


def test_no_quota_is_the_affinity(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path) is None
    assert available_cpus(tmp_path) == AFFINITY


def test_a_v2_quota_is_rounded_up_and_never_below_one(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert cgroup_quota(tmp_path) == 0.5
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert available_cpus(tmp_path) == min(2, AFFINITY)


def test_a_v1_quota_as_docker_run_cpus_sets_it(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("50000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) == 0.5
    assert available_cpus(tmp_path) == 1
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")  # no limit
    assert cgroup_quota(tmp_path) is None


def test_workers_auto_or_a_number() -> None:
    parse = workers_count(64)
    assert parse("W", "auto") == min(available_cpus(), 64)
    assert parse("W", "3") == 3
    with pytest.raises(SettingError, match="W"):
        parse("W", "0")
