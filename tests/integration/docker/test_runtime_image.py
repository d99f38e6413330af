"""pyfaasd/runtime-python under the real Docker engine: fwatchdog in python and http mode."""

from __future__ import annotations

from typing import Any

import aiodocker
import aiohttp
import pytest

from tests.docker_support import TEST_LABEL, require_image, unique_name
from tests.helpers import free_port, wait_http_ok

pytestmark = pytest.mark.docker


async def run_function(docker: aiodocker.Docker, image: str, **host_config: Any) -> tuple[Any, int]:
    require_image(image)
    port = free_port()
    config: dict[str, Any] = {
        "Image": image,
        "Labels": {TEST_LABEL: "1"},
        "Env": ["healthcheck_interval=0.5s", "write_timeout=5s"],
        "ExposedPorts": {"8080/tcp": {}},
        "HostConfig": {
            "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]},
            **host_config,
        },
    }
    container = await docker.containers.run(config, name=unique_name("pft-runtime"))
    return container, port


async def test_python_mode_sample_answers_and_stops_cleanly(docker: aiodocker.Docker) -> None:
    container, port = await run_function(docker, "pyfaasd/fn-hello-python:latest")
    await wait_http_ok(port)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/?name=docker") as response:
            assert response.status == 200
            assert await response.text() == "Hello, docker!\n"
            assert "X-Duration-Seconds" in response.headers
        async with session.post(f"http://127.0.0.1:{port}/function/anything", data=b"body") as response:
            assert await response.text() == "Hello, body!\n"
    await container.stop(t=10)
    state = (await container.show())["State"]
    assert state["ExitCode"] == 0  # SIGTERM drained and exited, not killed
    logs = "".join(await container.log(stdout=True, stderr=True))
    assert '"event": "handler_loaded"' in logs
    assert '"event": "watchdog_stopped"' in logs


async def test_runtime_runs_as_app_with_a_read_only_root(docker: aiodocker.Docker) -> None:
    container, port = await run_function(
        docker,
        "pyfaasd/fn-hello-python:latest",
        ReadonlyRootfs=True,
        Tmpfs={"/tmp": "rw,noexec,nosuid,size=16m"},
        CapDrop=["ALL"],
        SecurityOpt=["no-new-privileges"],
    )
    await wait_http_ok(port)
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as response:
        assert await response.text() == "Hello, world!\n"
    info = await container.show()
    assert info["Config"]["User"] == "app"
    assert info["Config"]["Entrypoint"] == ["fwatchdog"]


async def test_http_mode_function_image_proxies_to_its_process(docker: aiodocker.Docker) -> None:
    container, port = await run_function(docker, "pyfaasd/fn-echo-http:latest")
    await wait_http_ok(port)
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"http://127.0.0.1:{port}/items/1?x=2", data=b"hi") as response,
    ):
        assert response.status == 200
        seen = await response.json()
    assert (seen["method"], seen["path"], seen["body"]) == ("PUT", "/items/1?x=2", "hi")
    logs = "".join(await container.log(stdout=True, stderr=True))
    assert "stdout: PUT /items/1?x=2" in logs  # the function's own output, forwarded with of-watchdog's prefix
