"""The warm pool against the real engine: pooled replicas get everything a fresh one gets, a pooled container
serves one function for its life, and a provider killed with SIGKILL finds its pool-made replicas again."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.docker_support import require_image
from tests.provider_harness import ProviderProcess, Reply, http, wait_for

pytestmark = pytest.mark.docker

# The runtime whose watchdog waits for a hand-over: scripts/build-images makes :latest from this tree; a local run
# may point at another tag of it so as not to rebuild the shared one.
RUNTIME = os.environ.get("PYFAASD_TEST_RUNTIME", "pyfaasd/runtime-python:latest")
POOL_SIZE = 2

HANDLER = """
import os


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        return f"unreadable: {e.strerror}"


def limits():
    # (memory, cpu) as the kernel enforces them: cgroup v2, else v1
    if os.path.exists("/sys/fs/cgroup/memory.max"):
        return read("/sys/fs/cgroup/memory.max"), read("/sys/fs/cgroup/cpu.max")
    memory = read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    quota, period = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    return memory, f"{quota} {period}"


def handle(event, context):
    memory, cpu = limits()
    return {
        "env": os.environ.get("GREETING"),
        "pool_variable": os.environ.get("pyfaasd_pool_load"),
        "secret": read("/var/openfaas/secrets/token"),
        "memory": memory,
        "cpu": cpu,
        "volume": read("/mnt/data/note") if os.path.isdir("/mnt/data") else None,
        "write_timeout": os.environ.get("write_timeout"),
    }
"""


def pool_env(**extra: str) -> dict[str, str]:
    return {"PYFAASD_POOL_SIZE": str(POOL_SIZE), "PYFAASD_POOL_RUNTIMES": RUNTIME, **extra}


@pytest.fixture
def pooled_provider(provider_prerequisites: None, tmp_path: Any) -> Iterator[ProviderProcess]:
    require_image(RUNTIME)
    process = ProviderProcess(state_dir=tmp_path / "state", extra_env=pool_env(PYFAASD_ZERO_PAUSE="0"))
    try:
        process.start()
        yield process
    finally:
        process.cleanup()


def idle_pool(provider: ProviderProcess) -> set[str]:
    """IDs of the running pool containers no function has claimed."""
    return {c["ID"] for c in provider.containers(running_only=True, idle_pool=True) if provider.is_idle_pool(c)}


def full_pool(provider: ProviderProcess) -> set[str]:
    found: set[str] = wait_for(lambda: provider.idle_pool(POOL_SIZE), what="a full pool")
    return found


def upload(provider: ProviderProcess) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", HANDLER)
    reply = provider.call("POST", "/system/code?filename=fn.zip", raw=buffer.getvalue())
    assert reply.status in (200, 201), reply.text
    digest: str = reply.json()["digest"]
    return digest


def deploy(provider: ProviderProcess, name: str, digest: str, **fields: Any) -> Reply:
    annotations = {"com.pyfaasd.code": digest, **fields.pop("annotations", {})}
    spec = {"service": name, "image": RUNTIME, "annotations": annotations, **fields}
    return provider.call("POST", "/system/functions", spec)


def answer(provider: ProviderProcess, name: str) -> dict[str, Any]:
    [ip] = provider.hosts(name)
    reply = http("POST", f"http://{ip}:8080/", b"", timeout=10)
    assert reply.status == 200, reply.text
    found: dict[str, Any] = reply.json()
    return found


def replica_ids(provider: ProviderProcess, name: str) -> set[str]:
    """The containers Docker (with the claim records) says serve ``name``: by the replica's container name."""
    return {c["ID"] for c in provider.containers() if c["Names"].startswith(f"{name}.openfaas-fn.")}


def inspect(container_id: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", container_id], capture_output=True, text=True, check=True).stdout
    found: dict[str, Any] = json.loads(out)[0]
    return found


def exists(container_id: str) -> bool:
    return subprocess.run(["docker", "inspect", container_id], capture_output=True, check=False).returncode == 0


def test_a_pooled_replica_gets_the_functions_env_secrets_limits_and_labels(
    pooled_provider: ProviderProcess, name: str
) -> None:
    provider = pooled_provider
    pool = full_pool(provider)
    assert provider.call("POST", "/system/secrets", {"name": "token", "value": "s3cret"}).status == 201
    digest = upload(provider)
    reply = deploy(
        provider,
        name,
        digest,
        envVars={"GREETING": "hello", "write_timeout": "7s"},
        secrets=["token"],
        limits={"memory": "96Mi", "cpu": "500m"},
        labels={"team": "blue"},
    )
    assert reply.status == 202, (reply.text, provider.log_tail())

    [container] = replica_ids(provider, name)
    assert container in pool  # it came out of the pool
    got = answer(provider, name)
    assert got == {
        "env": "hello",
        "pool_variable": None,  # the hand-over variable is not the function's
        "secret": "s3cret",
        "memory": str(96 * 1024 * 1024),
        "cpu": "50000 100000",
        "volume": None,
        "write_timeout": "7s",
    }
    host = inspect(container)["HostConfig"]
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"]) == (96 << 20, 96 << 20, 500_000_000)
    status = provider.call("GET", f"/system/function/{name}").json()
    assert status["labels"]["team"] == "blue"
    assert status["envVars"] == {"GREETING": "hello", "write_timeout": "7s"}
    assert status["availableReplicas"] == 1

    # A secret updated in place shows in the running pooled replica, as through a fresh one's bind.
    assert provider.call("PUT", "/system/secrets", {"name": "token", "value": "rotated"}).status == 200
    assert answer(provider, name)["secret"] == "rotated"
    full_pool(provider)  # refilled in the background


def test_a_function_with_volumes_gets_a_fresh_container_with_them(pooled_provider: ProviderProcess, name: str) -> None:
    provider = pooled_provider
    pool = full_pool(provider)
    volume = f"v{name}"
    assert provider.call("POST", "/system/volumes", {"name": volume}).status == 201
    digest = upload(provider)
    reply = deploy(provider, name, digest, annotations={f"com.pyfaasd.volume.{volume}": "/mnt/data"})
    assert reply.status == 202, (reply.text, provider.log_tail())
    [container] = replica_ids(provider, name)
    assert container not in pool
    assert idle_pool(provider) == pool  # the pool was not touched
    mounts = {m["Destination"]: m for m in inspect(container)["Mounts"]}
    assert mounts["/mnt/data"]["Name"] == f"pyfaasd-{provider.bridge}-{volume}"
    assert answer(provider, name)["volume"].startswith("unreadable")  # mounted, empty: no note yet
    provider.call("DELETE", "/system/functions", {"functionName": name})


def test_a_pooled_container_never_serves_a_second_function(pooled_provider: ProviderProcess, name: str) -> None:
    provider = pooled_provider
    full_pool(provider)
    digest = upload(provider)
    assert deploy(provider, f"{name}a", digest).status == 202
    [first] = replica_ids(provider, f"{name}a")
    assert provider.call("DELETE", "/system/functions", {"functionName": f"{name}a"}).status == 200
    assert not exists(first)  # removed with its function, not given back
    pool = full_pool(provider)
    assert first not in pool
    assert deploy(provider, f"{name}b", digest).status == 202
    [second] = replica_ids(provider, f"{name}b")
    assert second != first

    # Scale to zero and wake after the pause window (PYFAASD_ZERO_PAUSE, 0 for this provider): the parked container
    # goes, the wake takes a new pooled container.
    assert provider.call("POST", f"/system/scale-function/{name}b", {"replicas": 0}).status in (200, 202)
    pool = full_pool(provider)
    assert provider.call("POST", f"/system/scale-function/{name}b", {"replicas": 1}).status in (200, 202)
    wait_for(lambda: len(replica_ids(provider, f"{name}b")) == 1, what="the parked container removed")
    [woken] = replica_ids(provider, f"{name}b")
    assert woken in pool
    assert woken != second
    assert answer(provider, f"{name}b")["env"] is None


def test_recovery_after_sigkill_keeps_pool_made_replicas_and_the_pool(
    provider_prerequisites: None, tmp_path: Any, name: str
) -> None:
    require_image(RUNTIME)
    provider = ProviderProcess(state_dir=tmp_path / "state", extra_env=pool_env())
    try:
        provider.start()
        full_pool(provider)
        assert provider.call("POST", "/system/secrets", {"name": "token", "value": "kept"}).status == 201
        digest = upload(provider)
        reply = deploy(provider, name, digest, envVars={"GREETING": "again"}, secrets=["token"])
        assert reply.status == 202, reply.text
        [replica] = replica_ids(provider, name)
        pool = full_pool(provider)

        provider.stop(signal.SIGKILL)
        provider.start()

        assert replica_ids(provider, name) == {replica}  # kept, recognised from its claim record
        assert answer(provider, name)["secret"] == "kept"
        assert provider.call("GET", f"/system/function/{name}").json()["availableReplicas"] == 1
        assert full_pool(provider) == pool  # the idle ones adopted
        # Nothing orphaned: every container of this provider is the replica or an idle pool container, and every
        # slot directory belongs to one of them.
        assert {c["ID"] for c in provider.containers(idle_pool=True)} == pool | {replica}
        slots = {p.name for p in (provider.state_dir / "pool").iterdir()}
        assert len(slots) == POOL_SIZE + 1

        # The replica dies: the provider restarts it, and it serves the same function again.
        subprocess.run(["docker", "kill", replica], capture_output=True, check=True)
        wait_for(lambda: provider.hosts(name) and inspect(replica)["State"]["Running"], what="the restart")
        assert answer(provider, name)["env"] == "again"
    finally:
        provider.cleanup()
