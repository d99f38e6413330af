"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest

from tests.helpers import free_port


@pytest.fixture
def port() -> int:
    return free_port()
