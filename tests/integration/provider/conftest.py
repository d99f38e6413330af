"""Fixtures for the provider's integration tests: a real provider process, real Docker, a throwaway bridge."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.docker_support import require_image
from tests.helpers import docker_available
from tests.provider_harness import ProviderProcess

HELLO = "pyfaasd/fn-hello-python:latest"
ECHO = "pyfaasd/fn-echo-http:latest"


@pytest.fixture(scope="session")
def provider_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.skip("the provider needs root (bridge, veth, iptables)")
    if not docker_available():
        pytest.skip("needs a running Docker Engine (scripts/setup starts one)")
    if shutil.which("iptables") is None:
        pytest.skip("needs iptables")
    require_image(HELLO)
    require_image(ECHO)


@pytest.fixture(scope="module")
def provider(provider_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderProcess]:
    """One provider for the tests of a module (each test uses function names of its own)."""
    process = ProviderProcess(state_dir=tmp_path_factory.mktemp("provider") / "state")
    try:
        process.start()
        yield process
    finally:
        process.cleanup()


@pytest.fixture
def make_provider(provider_prerequisites: None, tmp_path: Path) -> Iterator[Callable[..., ProviderProcess]]:
    """Providers of a test's own (for tests that kill and restart it)."""
    made: list[ProviderProcess] = []

    def make(**extra_env: str) -> ProviderProcess:
        process = ProviderProcess(state_dir=tmp_path / f"state{len(made)}", extra_env=extra_env)
        made.append(process)
        process.start()
        return process

    try:
        yield make
    finally:
        for process in made:
            process.cleanup()


@pytest.fixture
def name() -> str:
    return f"t{secrets.token_hex(3)}"
