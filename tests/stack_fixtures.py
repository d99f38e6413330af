"""The whole stack (``pyfaasd up``) of a test's own, as a subprocess on a throwaway bridge, subnet, ports and
state dir: the ``make_stack`` fixture the e2e tests and the provider's integration tests share (registered for
the whole suite by ``pytest_plugins`` in tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.docker_support import require_image
from tests.helpers import docker_available
from tests.provider_harness import ProviderProcess

ECHO: Final = "pyfaasd/fn-echo-http:latest"
HELLO: Final = "pyfaasd/fn-hello-python:latest"

MakeStack = Callable[..., ProviderProcess]


@pytest.fixture(scope="session")
def stack_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.skip("the stack needs root (bridge, veth, iptables)")
    if not docker_available():
        pytest.skip("needs a running Docker Engine (scripts/setup starts one)")
    if shutil.which("iptables") is None:
        pytest.skip("needs iptables")
    require_image(ECHO)
    require_image(HELLO)


@pytest.fixture
def make_stack(stack_prerequisites: None, tmp_path: Path) -> Iterator[MakeStack]:
    """``make(gateway_host="127.0.0.1", **extra_env)``: a started ``pyfaasd up`` of the test's own (its state dir
    under ``tmp_path``); everything each one made is removed after the test."""
    made: list[ProviderProcess] = []

    def make(gateway_host: str = "127.0.0.1", **extra_env: str) -> ProviderProcess:
        stack = ProviderProcess.stack(tmp_path / f"state{len(made)}", gateway_host=gateway_host, extra_env=extra_env)
        made.append(stack)
        stack.start()
        return stack

    try:
        yield make
    finally:
        for stack in made:
            stack.cleanup()
