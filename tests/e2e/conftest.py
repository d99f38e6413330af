"""Fixtures of the e2e tests; the stack itself (``make_stack``) is tests/stack_fixtures.py's."""

from __future__ import annotations

import secrets

import pytest


@pytest.fixture
def name() -> str:
    return f"e{secrets.token_hex(3)}"
