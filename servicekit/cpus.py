"""How many CPUs this process may use: the default number of serving processes.

The smallest of: the CPUs the scheduler lets it run on (``sched_getaffinity``: cpusets, ``taskset``) and the
cgroup's CPU quota rounded up (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), so a container
limited to 1.5 CPUs on a 16-core host gets 2, not 16. Go's runtime does the same for GOMAXPROCS since Go 1.25.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """At least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = cgroup_quota(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in CPUs, or None when there is none (or it cannot be read)."""
    for path in _own_cgroup_dirs(root):
        v2 = path / "cpu.max"
        try:
            quota, _, period = v2.read_text().partition(" ")
        except OSError:
            pass
        else:
            return None if quota.strip() == "max" else int(quota) / int(period)
        try:
            v1_quota = int((path / "cpu.cfs_quota_us").read_text())
            v1_period = int((path / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if v1_quota <= 0 else v1_quota / v1_period
    return None


def _own_cgroup_dirs(root: Path) -> list[Path]:
    """This process's cgroup directories (v2 unified, v1 cpu controller), then the mount roots (inside a
    container those are the container's own cgroup)."""
    dirs: list[Path] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            dirs.append(root / path.lstrip("/"))
        elif "cpu" in controllers.split(","):
            dirs.append(root / controllers / path.lstrip("/"))
            dirs.append(root / "cpu,cpuacct" / path.lstrip("/"))
    # Without a cgroup namespace (cgroup v1 Docker), /proc/self/cgroup names the host's path while the container
    # sees its own cgroup mounted at the controller's root.
    dirs += [root, root / "cpu", root / "cpu,cpuacct"]
    return dirs
