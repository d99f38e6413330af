"""Fixtures of the e2e tests; the stack itself (``make_stack``) is tests/stack_fixtures.py's, here on both
backends: every test that makes a stack runs once on ``docker`` and once on ``swarm``.

The swarm variants share one single-node swarm (``swarm init`` and ``leave`` take seconds each), made by the
first of them on an engine in none and left after the last test of this package (or earlier by a test that needs
the engine in no swarm, tests/e2e/test_swarm_up_e2e.py); each stack has an overlay and an anchor of its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.swarm_support import SharedSwarm


@pytest.fixture(params=["docker", "swarm"])
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture(scope="package")
def shared_swarm() -> Iterator[SharedSwarm]:
    swarm = SharedSwarm()
    try:
        yield swarm
    finally:
        swarm.leave()


@pytest.fixture
def name() -> str:
    return f"e{secrets.token_hex(3)}"
