"""The whole stack (``pyfaasd up``) of a test's own, as a subprocess on a throwaway bridge, subnet, ports and
state dir: the ``make_stack`` fixture the e2e tests and the provider's integration tests share (registered for
the whole suite by ``pytest_plugins`` in tests/conftest.py).

``backend`` says which: ``docker`` here; tests/e2e/conftest.py parametrizes it over ``docker`` and ``swarm`` (the
swarm one is ``pyfaasd up --backend swarm`` on the package's shared swarm, tests/swarm_support.py). A test whose
swarm variant cannot run yet says why with :func:`docker_only`.
"""

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
from tests.swarm_support import SharedSwarm, SwarmStack

ECHO: Final = "pyfaasd/fn-echo-http:latest"
HELLO: Final = "pyfaasd/fn-hello-python:latest"

MakeStack = Callable[..., ProviderProcess]

# What the swarm backend refuses with a 400 (docs/swarm.md, "Not yet" 5): requirements need a dependency set every
# node can use, and `pyfaasd dev` bind-mounts a directory of this host.
REQUIREMENTS_ON_SWARM: Final = "code functions with requirements: not on swarm yet (docs/swarm.md)"
DEV_ON_SWARM: Final = "pyfaasd dev mounts a directory of this host: not on swarm (docs/swarm.md)"


def docker_only(reason: str) -> pytest.MarkDecorator:
    """Run the test on the docker backend only; its swarm variant is reported skipped for ``reason``."""
    return pytest.mark.parametrize("backend", ["docker", pytest.param("swarm", marks=pytest.mark.skip(reason=reason))])


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
def backend() -> str:
    return "docker"


@pytest.fixture
def make_stack(
    stack_prerequisites: None, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> Iterator[MakeStack]:
    """``make(gateway_host="127.0.0.1", **extra_env)``: a started ``pyfaasd up`` of the test's own (its state dir
    under ``tmp_path``) on ``backend``; everything each one made is removed after the test."""
    shared: SharedSwarm | None = None
    if backend == "swarm":
        shared = request.getfixturevalue("shared_swarm")
        shared.ensure()
    made: list[ProviderProcess] = []

    def make(gateway_host: str = "127.0.0.1", **extra_env: str) -> ProviderProcess:
        state_dir = tmp_path / f"state{len(made)}"
        stack = (
            ProviderProcess.stack(state_dir, gateway_host=gateway_host, extra_env=extra_env)
            if shared is None
            else SwarmStack.stack(state_dir, gateway_host=gateway_host, extra_env=extra_env, swarm=shared)
        )
        made.append(stack)
        stack.start()
        return stack

    try:
        yield make
    finally:
        for stack in made:
            stack.cleanup()
