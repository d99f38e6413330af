"""Volumes against the real engine: shared named volumes, auto, read-only, host paths, NFS up to the mount."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker_support import require_image
from tests.helpers import free_port
from tests.provider_harness import ProviderProcess, Reply, http

pytestmark = pytest.mark.docker

RUNTIME = "pyfaasd/runtime-python:latest"
# A code function that writes the request body to a file of its volume (POST) and reads it back (GET).
FILES = b"""import os
import pathlib


def handle(event, context):
    path = pathlib.Path(os.environ["DATA"]) / (event.query.get("file") or "f")
    if event.method == "POST":
        try:
            path.write_bytes(event.body)
        except OSError as e:
            return (f"refused: {e.strerror}", 500)
        return "written"
    return path.read_bytes() if path.exists() else ("missing", 404)
"""


@pytest.fixture(scope="module")
def host_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("srv")


@pytest.fixture(scope="module")
def provider(
    provider_prerequisites: None, tmp_path_factory: pytest.TempPathFactory, host_root: Path
) -> Iterator[ProviderProcess]:
    require_image(RUNTIME)
    process = ProviderProcess(
        state_dir=tmp_path_factory.mktemp("provider") / "state", extra_env={"PYFAASD_VOLUME_HOST_ROOTS": str(host_root)}
    )
    try:
        process.start()
        yield process
    finally:
        for volume in process.call("GET", "/system/volumes").json() if process.proc else []:
            for function in volume["functions"]:
                process.call("DELETE", "/system/functions", {"functionName": function.split(".")[0]})
            process.call("DELETE", "/system/volumes", {"name": volume["name"]})
        process.cleanup()


@pytest.fixture(scope="module")
def files_code(provider: ProviderProcess) -> str:
    reply = provider.call("POST", "/system/code?filename=handler.py", raw=FILES)
    assert reply.status in (200, 201), reply.text
    digest: str = reply.json()["digest"]
    return digest


def deploy(
    provider: ProviderProcess,
    name: str,
    digest: str,
    volumes: dict[str, str],
    data: str,
    method: str = "POST",
    **extra: Any,
) -> Reply:
    """A code function with the given volume annotations and ``DATA`` naming the directory it uses."""
    annotations = {"com.pyfaasd.code": digest, **{f"com.pyfaasd.volume.{k}": v for k, v in volumes.items()}}
    spec = {"service": name, "image": RUNTIME, "annotations": annotations, "envVars": {"DATA": data}, **extra}
    return provider.call(method, "/system/functions", spec)


def call(
    provider: ProviderProcess, name: str, method: str = "GET", body: bytes | None = None, replica: int = 0
) -> Reply:
    ips = provider.hosts(name)
    return http(method, f"http://{ips[replica % len(ips)]}:8080/?file=f", body, timeout=10)


def of(provider: ProviderProcess, name: str) -> list[dict[str, str]]:
    return [c for c in provider.containers() if f"com.pyfaasd.function={name}" in c["Labels"]]


def docker_volume(name: str) -> dict[str, Any] | None:
    out = subprocess.run(["docker", "volume", "inspect", name], capture_output=True, text=True, check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def test_two_functions_and_their_replicas_share_a_named_volume(
    provider: ProviderProcess, name: str, files_code: str
) -> None:
    volume = f"data-{name}"
    assert provider.call("POST", "/system/volumes", {"name": volume}).status == 201
    writer = deploy(provider, f"{name}w", files_code, {volume: "/mnt/data"}, "/mnt/data",
                    labels={"com.openfaas.scale.min": "2"}, readOnlyRootFilesystem=True)  # fmt: skip
    assert writer.status == 202, (writer.text, provider.log_tail())
    assert deploy(provider, f"{name}r", files_code, {volume: "/mnt/in:ro"}, "/mnt/in").status == 202

    assert (call(provider, f"{name}w", "POST", b"shared", replica=0).text) == "written"  # as the non-root user
    assert call(provider, f"{name}w", replica=1).text == "shared"  # the other replica sees it
    assert call(provider, f"{name}r").text == "shared"  # and so does the other function
    refused = call(provider, f"{name}r", "POST", b"nope")
    assert (refused.status, "Read-only file system" in refused.text) == (500, True)

    listed = {v["name"]: v for v in provider.call("GET", "/system/volumes").json()}
    assert listed[volume]["functions"] == [f"{name}r.openfaas-fn", f"{name}w.openfaas-fn"]
    in_use = provider.call("DELETE", "/system/volumes", {"name": volume})
    assert in_use.status == 409
    assert f"{name}w.openfaas-fn" in in_use.text
    for function in (f"{name}w", f"{name}r"):
        provider.call("DELETE", "/system/functions", {"functionName": function})
    assert provider.call("DELETE", "/system/volumes", {"name": volume}).status == 200
    assert docker_volume(f"pyfaasd-{provider.bridge}-{volume}") is None


def test_the_auto_volume_survives_update_remove_and_redeploy(
    provider: ProviderProcess, name: str, files_code: str
) -> None:
    assert deploy(provider, name, files_code, {"auto": "/mnt/auto"}, "/mnt/auto").status == 202
    assert call(provider, name, "POST", b"kept").text == "written"
    updated = deploy(provider, name, files_code, {"auto": "/mnt/auto"}, "/mnt/auto", method="PUT",
                     labels={"version": "2"})  # fmt: skip
    assert updated.status == 202
    assert call(provider, name).text == "kept"
    provider.call("DELETE", "/system/functions", {"functionName": name})
    assert docker_volume(f"pyfaasd-{provider.bridge}-auto-{name}-openfaas-fn") is not None
    assert deploy(provider, name, files_code, {"auto": "/mnt/auto"}, "/mnt/auto").status == 202
    assert call(provider, name).text == "kept"
    provider.call("DELETE", "/system/functions", {"functionName": name})
    assert provider.call("DELETE", "/system/volumes", {"name": f"auto-{name}-openfaas-fn"}).status == 200


def test_volumes_and_their_data_survive_a_provider_restart(
    provider: ProviderProcess, name: str, files_code: str
) -> None:
    volume = f"kept-{name}"
    assert provider.call("POST", "/system/volumes", {"name": volume}).status == 201
    assert deploy(provider, name, files_code, {volume: "/mnt/kept"}, "/mnt/kept").status == 202
    assert call(provider, name, "POST", b"before").text == "written"
    provider.stop(signal.SIGKILL)
    provider.start()
    listed = {v["name"]: v for v in provider.call("GET", "/system/volumes").json()}
    assert listed[volume]["functions"] == [f"{name}.openfaas-fn"]
    assert call(provider, name).text == "before"
    provider.call("DELETE", "/system/functions", {"functionName": name})
    assert provider.call("DELETE", "/system/volumes", {"name": volume}).status == 200


def test_host_paths_inside_the_roots_only(
    provider: ProviderProcess, name: str, files_code: str, host_root: Path
) -> None:
    media = host_root / name
    media.mkdir()
    (media / "f").write_text("from the host")
    assert provider.call("POST", "/system/volumes", {"name": f"media-{name}", "hostPath": str(media)}).status == 201
    assert deploy(provider, name, files_code, {f"media-{name}": "/mnt/media:ro"}, "/mnt/media").status == 202
    assert call(provider, name).text == "from the host"
    outside = provider.call("POST", "/system/volumes", {"name": f"etc-{name}", "hostPath": "/etc"})
    assert (outside.status, "PYFAASD_VOLUME_HOST_ROOTS" in outside.text) == (400, True)
    provider.call("DELETE", "/system/functions", {"functionName": name})
    provider.call("DELETE", "/system/volumes", {"name": f"media-{name}"})


def test_refusals_at_deploy_leave_nothing(provider: ProviderProcess, name: str, files_code: str) -> None:
    for volumes, message in (
        ({"nope": "/mnt"}, "there is no volume nope"),
        ({"auto": "/home/app/function"}, "clashes with /home/app/function"),
    ):
        reply = deploy(provider, name, files_code, volumes, "/mnt")
        assert (reply.status, message in reply.text) == (400, True), reply.text
        assert of(provider, name) == []
    assert docker_volume(f"pyfaasd-{provider.bridge}-auto-{name}-openfaas-fn") is None


NFS_OPTIONS = "nfsvers=4,soft,timeo=10,retrans=1"  # bounded: never a hard mount that hangs a test


def test_an_nfs_volume_reaches_docker_and_a_failed_mount_is_a_4xx_naming_it(
    provider: ProviderProcess, name: str, files_code: str
) -> None:
    volume = f"nas-{name}"
    share = {"server": "127.0.0.1", "path": "/export", "options": NFS_OPTIONS}
    assert provider.call("POST", "/system/volumes", {"name": volume, "nfs": share}).status == 201
    inspected = docker_volume(f"pyfaasd-{provider.bridge}-{volume}")
    assert inspected is not None
    assert (inspected["Driver"], inspected["Options"]) == (
        "local",
        {"type": "nfs", "o": f"addr=127.0.0.1,{NFS_OPTIONS}", "device": ":/export"},
    )
    started = time.monotonic()
    reply = deploy(provider, name, files_code, {volume: "/mnt/nas"}, "/mnt/nas")
    assert time.monotonic() - started < 30
    assert reply.status == 422, reply.text
    assert f"volume {volume} could not be mounted" in reply.text
    assert of(provider, name) == []
    assert provider.call("DELETE", "/system/volumes", {"name": volume}).status == 200


GANESHA_CONF = """NFS_CORE_PARAM {{ Protocols = 4; Bind_addr = 127.0.0.1; NFS_Port = {port}; }}
NFSV4 {{ Grace_Period = 1; Lease_Lifetime = 10; }}
EXPORT {{ Export_Id = 1; Path = {path}; Pseudo = /export; Access_Type = RW; Squash = No_Root_Squash;
  SecType = sys; Protocols = 4; Transports = TCP; FSAL {{ Name = VFS; }} }}
"""


def test_a_real_nfs_share_is_mounted_where_the_kernel_can(
    provider: ProviderProcess, name: str, files_code: str, tmp_path: Path
) -> None:
    if "nfs" not in Path("/proc/filesystems").read_text().split():
        pytest.skip("this kernel has no NFS client (no nfs in /proc/filesystems): a real share cannot be mounted")
    ganesha = shutil.which("ganesha.nfsd")
    if ganesha is None:
        pytest.skip("nfs-ganesha is not installed (apt-get install nfs-ganesha nfs-ganesha-vfs)")
    export = tmp_path / "export"
    export.mkdir(mode=0o777)
    export.chmod(0o777)
    port = free_port()
    conf = tmp_path / "ganesha.conf"
    conf.write_text(GANESHA_CONF.format(port=port, path=export))
    server = subprocess.Popen(
        [ganesha, "-F", "-f", str(conf), "-L", str(tmp_path / "ganesha.log"), "-p", str(tmp_path / "ganesha.pid")]
    )
    try:
        time.sleep(2)  # the grace period configured above
        share = {"server": "127.0.0.1", "path": "/export", "options": f"nfsvers=4,port={port},{NFS_OPTIONS}"}
        assert provider.call("POST", "/system/volumes", {"name": f"share-{name}", "nfs": share}).status == 201
        reply = deploy(provider, name, files_code, {f"share-{name}": "/mnt/share"}, "/mnt/share")
        assert reply.status == 202, reply.text
        assert call(provider, name, "POST", b"over nfs").text == "written"
        assert (export / "f").read_bytes() == b"over nfs"
        provider.call("DELETE", "/system/functions", {"functionName": name})
        provider.call("DELETE", "/system/volumes", {"name": f"share-{name}"})
    finally:
        server.terminate()
        server.wait(10)
