"""servicekit.open_files on this process's real RLIMIT_NOFILE (put back after each test)."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from servicekit import open_files


@pytest.fixture
def limit() -> Iterator[tuple[int, int]]:
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        yield saved
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def test_the_soft_limit_is_raised_to_the_hard_one(limit: tuple[int, int]) -> None:
    hard = limit[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    before, after = open_files.raise_soft_limit()
    assert (before.soft, after.soft, after.hard) == (1024, hard, hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


def test_the_default_connection_cap_is_three_quarters_of_the_soft_limit(limit: tuple[int, int]) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1000, limit[1]))
    assert open_files.connection_budget() == 750
