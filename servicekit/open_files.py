"""The process's open-file limit (RLIMIT_NOFILE): each connection is a descriptor, so the daemons size by it.

:func:`raise_soft_limit` lifts the soft limit to the hard one at start, as Go programs do since Go 1.19 (faasd's
processes get it from their runtime): the soft default of a login shell is often 1,024, while systemd units set
both (``LimitNOFILE=`` in systemd/*.service). :func:`connection_budget` is the default connection cap of a
serving process: three quarters of the soft limit. An idle or slow client holds one descriptor, a proxied request
two (the client's and the upstream's), and refused clients, pools and the rest of the process (the provider under
``pyfaasd up``) need some too: the last quarter (5,000 at a limit of 20,000; 16,384 at the units' 65,536) is for
them. Half would never run out even with every client mid-request, but it refuses clients that merely wait long
before a lack of descriptors could hurt anyone.
"""

from __future__ import annotations

import contextlib
import resource
from dataclasses import dataclass

UNLIMITED_STAND_IN = 1 << 20  # what "unlimited" counts as (Linux's default fs.nr_open)


@dataclass(frozen=True, slots=True)
class OpenFileLimit:
    soft: int
    hard: int


def _count(value: int) -> int:
    return UNLIMITED_STAND_IN if value == resource.RLIM_INFINITY else value


def current() -> OpenFileLimit:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return OpenFileLimit(_count(soft), _count(hard))


def raise_soft_limit() -> tuple[OpenFileLimit, OpenFileLimit]:
    """Set the soft limit to the hard limit; the limits before and after (unchanged if the kernel refuses)."""
    before = current()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # a hard limit above fs.nr_open: keep what we have
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return before, current()


def connection_budget() -> int:
    """The default cap on client connections of one serving process: three quarters of the soft limit."""
    return max(1, current().soft * 3 // 4)
