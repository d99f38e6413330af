"""Helpers for tests against the real Docker engine (fixtures are in tests/integration/docker/conftest.py)."""

from __future__ import annotations

import secrets
import subprocess

import pytest

TEST_LABEL = "com.pyfaasd.test"


def require_image(tag: str) -> None:
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode != 0:
        pytest.fail(f"image {tag} is missing: run scripts/build-images")


def unique_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
