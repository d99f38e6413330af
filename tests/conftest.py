"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest

from tests.helpers import free_port

pytest_plugins = ("tests.stack_fixtures",)  # make_stack: the whole stack, for the e2e and provider tests


@pytest.fixture
def port() -> int:
    return free_port()
