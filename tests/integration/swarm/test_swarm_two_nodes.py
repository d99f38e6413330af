"""PYFAASD_BACKEND=swarm on two nodes: a second Docker engine in a network namespace of its own, joined as a worker.

The second engine has its own data root, exec root, pid file and socket, no bridge and no iptables rules of its
own (it never touches the first engine's), and reaches the manager over a veth pair (10.199.0.0/24). It is
started with ``nsenter --net`` rather than ``ip netns exec``: the latter mounts a fresh /sys, in which dockerd
finds no cgroup ("Devices cgroup isn't mounted"). It gets the function image with ``docker save | docker load``
(nothing can be pulled). The swarm, the namespace, the engine and its directory are gone after the module.
A code function with a volume shows what the worker gets without the provider's directories: its bundle as Swarm
configs, its volume made by the worker's engine from the mount's driver options.

The functions' stack (provider and gateway in the anchor's network namespace) is the single-node test's
``stack`` fixture, on this module's two-node ``swarm``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_support import require_image, unique_name
from tests.helpers import docker_available
from tests.integration.swarm.test_swarm_backend import (  # noqa: F401 (overlays, stack: fixtures)
    ECHO,
    RUNTIME,
    SwarmStack,
    overlays,
    stack,
)
from tests.provider_harness import http, wait_for, wait_for_hostnames
from tests.swarm_support import docker, leave_swarm, require_no_swarm

pytestmark = [pytest.mark.docker, pytest.mark.netns]

NETNS = "pyfaasd-node2"
MANAGER_IP = "10.199.0.1"
WORKER_IP = "10.199.0.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class SecondEngine:
    """A dockerd in its own network namespace and directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = f"unix://{root}/docker.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def docker(self, *args: str, check: bool = True) -> str:
        return docker("-H", self.host, *args, check=check)

    def start(self) -> None:
        ip("netns", "add", NETNS)
        ip("link", "add", "pf-node2-h", "type", "veth", "peer", "name", "pf-node2-n")
        ip("link", "set", "pf-node2-n", "netns", NETNS)
        ip("addr", "add", f"{MANAGER_IP}/24", "dev", "pf-node2-h")
        ip("link", "set", "pf-node2-h", "up")
        for command in (
            ["addr", "add", f"{WORKER_IP}/24", "dev", "pf-node2-n"],
            ["link", "set", "pf-node2-n", "up"],
            ["link", "set", "lo", "up"],
            ["route", "add", "default", "via", MANAGER_IP],
        ):
            ip("-n", NETNS, *command)
        (self.root / "data").mkdir(parents=True)
        (self.root / "exec").mkdir()
        log = (self.root / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            [
                "nsenter", f"--net=/run/netns/{NETNS}", "dockerd",
                "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                "--pidfile", str(self.root / "docker.pid"), "-H", self.host,
                "--bridge=none", "--iptables=false", "--ip6tables=false",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

        def answering() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the second dockerd exited: {self.log_tail()}")
            return self.docker("info", "--format", "{{.ServerVersion}}", check=False) != ""

        wait_for(answering, 60, 0.5, "the second dockerd to answer")

    def load(self, image: str) -> None:
        with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
            subprocess.run(
                ["docker", "-H", self.host, "load"], stdin=save.stdout, check=True, capture_output=True, timeout=300
            )

    def log_tail(self) -> str:
        path = self.root / "dockerd.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else ""

    def stop(self) -> None:
        self.docker("swarm", "leave", "--force", check=False)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", "pf-node2-h"], capture_output=True, check=False)
        subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def swarm() -> Iterator[SecondEngine]:
    """A two-node swarm: this engine as the manager, the second one as a worker."""
    if os.geteuid() != 0 or shutil.which("nsenter") is None or shutil.which("dockerd") is None:
        pytest.skip("needs root, nsenter and dockerd (a second engine in a network namespace)")
    if not docker_available():
        pytest.skip("needs a running Docker Engine")
    require_image(ECHO)
    require_image(RUNTIME)
    if subprocess.run(["ip", "netns", "pids", NETNS], capture_output=True, check=False).returncode == 0:
        pytest.skip(f"a network namespace {NETNS} exists already")
    had_gwbridge = require_no_swarm("it")
    engine = SecondEngine(Path(tempfile.mkdtemp(prefix="pyfaasd-node2-")))
    try:
        engine.start()
        engine.load(ECHO)
        engine.load(RUNTIME)  # shares its layers with ECHO's
        docker("swarm", "init", "--advertise-addr", MANAGER_IP)
        token = docker("swarm", "join-token", "-q", "worker")
        engine.docker("swarm", "join", "--token", token, "--advertise-addr", WORKER_IP, f"{MANAGER_IP}:2377")
        wait_for(
            lambda: docker("node", "ls", "--format", "{{.Status}}").split() == ["Ready", "Ready"],
            60,
            0.5,
            "both nodes to be ready",
        )
        yield engine
    finally:
        engine.stop()
        leave_swarm(had_gwbridge)


def test_replicas_spread_over_both_nodes_and_both_serve(swarm: SecondEngine, stack: SwarmStack) -> None:  # noqa: F811
    name = "two-nodes"
    spec = {"service": name, "image": ECHO, "labels": {"com.openfaas.scale.min": "2"}}
    assert stack.call("POST", "/system/functions", spec).status == 202
    assert stack.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 2}).status == 200
    service = stack.services()[0]
    label = f"label=com.docker.swarm.service.name={service}"

    def one_task_on_each_node() -> bool:
        here = docker("ps", "-q", "--filter", label, "--filter", "status=running").split()
        there = swarm.docker("ps", "-q", "--filter", label, "--filter", "status=running").split()
        return len(here) == 1 and len(there) == 1

    started = time.monotonic()
    wait_for(one_task_on_each_node, 120, 0.5, "a task of the function on each node")
    remote = swarm.docker("ps", "-q", "--filter", label)[:12]  # the worker's task: its container id is its hostname
    served = wait_for_hostnames(f"{stack.gateway_url}/function/{name}", 2, 60, "both nodes' tasks to serve")
    assert remote in served, (remote, served)
    status = stack.call("GET", f"/system/function/{name}").json()
    assert (status["replicas"], status["availableReplicas"]) == (2, 2)
    print(f"two nodes: both tasks serving {time.monotonic() - started:.1f}s after the scale")


HANDLER = """import json
import socket

from lib.answer import ANSWER


def handle(event, context):
    body = json.dumps({"hostname": socket.gethostname(), "answer": ANSWER})
    return {"statusCode": 200, "body": body, "headers": {"Content-Type": "application/json"}}
"""


def test_a_code_function_and_its_volume_on_the_worker(swarm: SecondEngine, stack: SwarmStack) -> None:  # noqa: F811
    volume = unique_name("vol")
    assert stack.call("POST", "/system/volumes", {"name": volume}).status == 201
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("handler.py", HANDLER)
        archive.writestr("lib/__init__.py", "")
        archive.writestr("lib/answer.py", "ANSWER = 'from the configs'\n")
    headers = {"Authorization": stack.authorization, "Content-Type": "application/octet-stream"}
    uploaded = http("POST", f"{stack.gateway_url}/system/code?filename=fn.zip", bundle.getvalue(), headers, timeout=30)
    assert uploaded.status == 201, uploaded.text

    name = unique_name("code2")
    spec = {
        "service": name,
        "image": RUNTIME,
        "labels": {"com.openfaas.scale.min": "2"},
        "annotations": {"com.pyfaasd.code": uploaded.json()["digest"], f"com.pyfaasd.volume.{volume}": "/data:ro"},
    }
    deployed = stack.call("POST", "/system/functions", spec)
    assert deployed.status == 202, deployed.text
    label = f"label=com.docker.swarm.service.name=openfaas-fn_{name}"

    def one_task_on_each_node() -> bool:
        here = docker("ps", "-q", "--filter", label, "--filter", "status=running").split()
        there = swarm.docker("ps", "-q", "--filter", label, "--filter", "status=running").split()
        return len(here) == 1 and len(there) == 1

    wait_for(one_task_on_each_node, 120, 0.5, "a task of the code function on each node")
    remote = swarm.docker("ps", "-q", "--filter", label)[:12]
    served = wait_for_hostnames(f"{stack.gateway_url}/function/{name}", 2, 60, "both nodes' tasks to serve the code")
    assert remote in served, (remote, served)
    assert http("GET", f"{stack.gateway_url}/function/{name}", timeout=30).json()["answer"] == "from the configs"
    # the worker's engine made the volume from the service mount (labels and all); the provider never asked it
    made = json.loads(swarm.docker("volume", "inspect", f"pyfaasd-{stack.network}-{volume}"))[0]
    assert made["Labels"]["com.pyfaasd.volume"] == volume
    assert made["Labels"]["com.pyfaasd.swarm-network"] == stack.network

    assert stack.call("DELETE", "/system/functions", {"functionName": name}).status == 200
    assert docker("config", "ls", "-q", "--filter", f"label=com.pyfaasd.function={name}") == ""
