"""``pyfaasd up --backend swarm`` end to end: the whole stack on a swarm it makes, reached from the host.

``up`` makes the swarm (the engine must be in none: the test never touches someone else's swarm), the overlay and
the anchor, runs provider and gateway in the anchor's network namespace and publishes the gateway on a loopback
port of the host. The test then speaks to it only as a user would from the host: faas-cli's deploy (PUT → 404 →
POST), ``/function/<name>`` from the host, scale, remove; then it stops ``up`` and checks the anchor is gone,
removes what is left of the swarm (services, overlay) and leaves the swarm ``up`` made.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docker_support import require_image, unique_name
from tests.helpers import ROOT, docker_available, free_port
from tests.provider_harness import Reply, http, wait_for, wait_for_hostnames
from tests.swarm_support import (
    SharedSwarm,
    docker,
    leave_swarm,
    remove_swarm_stack,
    require_no_swarm,
    stop_processes,
)

pytestmark = [pytest.mark.docker, pytest.mark.netns]

ECHO = "pyfaasd/fn-echo-http:latest"


@dataclass
class SwarmUp:
    url: str
    state_dir: Path
    network: str
    process: subprocess.Popen[bytes]
    log: Path

    def call(self, method: str, path: str, payload: object = None) -> Reply:
        secrets_dir = self.state_dir / "secrets"
        user = (secrets_dir / "basic-auth-user").read_text().strip()
        password = (secrets_dir / "basic-auth-password").read_text().strip()
        headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        return http(method, f"{self.url}{path}", body, headers, timeout=60)

    def output(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def async_call_is_run(self, function: str, body: bytes, what: str) -> None:
        """An async call: 202 once the JetStream server beside the gateway has it, then run and recorded done,
        and the server's store is in ``<state>/nats``."""
        call_id = f"{function}-async"
        accepted = http("POST", f"{self.url}/async-function/{function}", body, {"X-Call-Id": call_id}, timeout=30)
        assert accepted.status == 202, accepted.text
        wait_for(lambda: self.call("GET", f"/system/async/{call_id}").json().get("status") == "done", 30, 0.2, what)
        assert (self.state_dir / "nats" / "store" / "jetstream").is_dir()


def remove_stack(network: str, had_gwbridge: bool) -> None:
    """Remove what the stack made on the swarm (services, their task containers, anchor, overlay), then leave the
    swarm the test's ``up`` made."""
    remove_swarm_stack(network)
    leave_swarm(had_gwbridge)


@pytest.fixture
def no_swarm(shared_swarm: SharedSwarm) -> None:
    """These tests see a swarm made by ``up`` itself: the one the other e2e tests share is left first."""
    shared_swarm.leave()


@pytest.fixture
def swarm_up(tmp_path: Path, no_swarm: None) -> Iterator[SwarmUp]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root (the stack enters the anchor's network namespace)")
    if not docker_available():
        pytest.skip("needs a running Docker Engine")
    require_image(ECHO)
    require_image("pyfaasd/runtime-python:latest")  # the anchor's image
    had_gwbridge = require_no_swarm("`up`")
    network = unique_name("pfe-overlay")
    port = free_port()
    log = tmp_path / "up.log"
    env = {
        **os.environ,
        "PYFAASD_SWARM_ADVERTISE_ADDR": "127.0.0.1",
        "PYFAASD_AUTOSCALE": "false",
        "PYFAASD_GATEWAY_WORKERS": "1",
    }
    argv = [
        sys.executable, "-m", "pyfaasd.cli", "up", "--backend", "swarm", "--swarm-network", network,
        "--state-dir", str(tmp_path / "state"), "--gateway-addr", f"127.0.0.1:{port}",
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    made = SwarmUp(f"http://127.0.0.1:{port}", tmp_path / "state", network, process, log)
    try:
        yield made
    finally:
        stop_processes([process], 30)
        remove_stack(network, had_gwbridge)
        print(made.output())


def test_up_with_the_swarm_backend_serves_functions_to_the_host(swarm_up: SwarmUp) -> None:
    started = time.monotonic()

    def answering() -> bool:
        if swarm_up.process.poll() is not None:
            raise AssertionError(f"pyfaasd up exited {swarm_up.process.returncode}: {swarm_up.output()}")
        try:
            return http("GET", f"{swarm_up.url}/healthz", timeout=5).status == 200
        except OSError:
            return False

    wait_for(answering, 60, 0.2, "pyfaasd up --backend swarm to answer on the host")
    up_s = time.monotonic() - started
    assert docker("info", "--format", "{{.Swarm.LocalNodeState}}") == "active"  # up made the swarm
    assert swarm_up.call("GET", "/system/info").json()["provider"]["orchestration"] == "swarm"

    # faas-cli's deploy: PUT (404: new), then POST, with faas-cli's JSON
    name = unique_name("up")
    spec: dict[str, object] = {
        "service": name,
        "image": ECHO,
        "network": "func_functions",
        "envProcess": "",
        "envVars": {"GREETING": "hi"},
        "labels": {"com.openfaas.scale.min": "1"},
        "annotations": {},
        "secrets": [],
        "limits": {"memory": "128Mi"},
        "requests": None,
        "readOnlyRootFilesystem": False,
        "namespace": "openfaas-fn",
    }
    assert swarm_up.call("PUT", "/system/functions", spec).status == 404
    deploy_started = time.monotonic()
    deployed = swarm_up.call("POST", "/system/functions", spec)
    assert deployed.status == 202, deployed.text
    deploy_s = time.monotonic() - deploy_started

    # curl from the host, through the published port, to the task on the overlay
    reply = http("POST", f"{swarm_up.url}/function/{name}/from-host?x=1", b"hello swarm", timeout=30)
    assert reply.status == 200, reply.text
    echoed = reply.json()
    assert (echoed["method"], echoed["path"], echoed["body"]) == ("POST", "/from-host?x=1", "hello swarm")

    # an async call through the JetStream server `up` runs in the anchor
    swarm_up.async_call_is_run(name, b"later", "the async call to be delivered through JetStream")

    # scale to 2: both tasks serve requests from the host
    scaled = swarm_up.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 2})
    assert scaled.status == 200, scaled.text
    wait_for_hostnames(f"{swarm_up.url}/function/{name}", 2, 15, "both tasks to serve")
    assert [f["replicas"] for f in swarm_up.call("GET", "/system/functions").json() if f["name"] == name] == [2]

    # remove: the service goes, the function is 404 through the gateway
    assert swarm_up.call("DELETE", "/system/functions", {"functionName": name}).status == 200
    assert docker("service", "ls", "-q", "--filter", f"name=openfaas-fn_{name}") == ""
    wait_for(
        lambda: http("GET", f"{swarm_up.url}/function/{name}", timeout=30).status == 404, 15, 0.2, "a 404 after remove"
    )

    # stop: up exits 0 and removes its anchor (the published port with it)
    swarm_up.process.send_signal(signal.SIGTERM)
    assert swarm_up.process.wait(60) == 0, swarm_up.output()
    assert docker("ps", "-aq", "--filter", f"name=pyfaasd-anchor-{swarm_up.network}") == ""
    print(f"swarm up: answering after {up_s:.1f}s (swarm init included), deploy 202 after {deploy_s:.1f}s")


def test_the_install_units_commands_bring_the_stack_up_as_systemd_would(tmp_path: Path, no_swarm: None) -> None:
    """What the units of ``pyfaasd install --backend swarm`` run, in their order, without systemd: the provider
    unit's ExecStartPre (``swarm-anchor --pin``, which makes the swarm this time), its ExecStart (``provider
    --netns``), the NATS unit's ``nats-server`` and the gateway unit's ``gateway --in-anchor`` in the pinned
    namespace (``nsenter --net=`` standing in for ``NetworkNamespacePath=``, which joins it the same way, by setns
    on the pinned file); an async call goes through that nats-server."""
    if os.geteuid() != 0 or shutil.which("nsenter") is None or shutil.which("umount") is None:
        pytest.skip("needs root, nsenter and umount")
    if not docker_available():
        pytest.skip("needs a running Docker Engine")
    require_image(ECHO)
    had_gwbridge = require_no_swarm("it")
    network = unique_name("pfi-overlay")
    port = free_port()
    pin = tmp_path / "run" / "swarm-netns"
    state_dir = tmp_path / "state"
    env = {
        **os.environ,
        "PYFAASD_STATE_DIR": str(state_dir),
        "PYFAASD_SWARM_NETWORK": network,
        "PYFAASD_SWARM_ADVERTISE_ADDR": "127.0.0.1",
        "PYFAASD_GATEWAY_ADDR": f"127.0.0.1:{port}",
        "PYFAASD_BACKEND": "swarm",
        "PYFAASD_AUTOSCALE": "false",
        "PYFAASD_GATEWAY_WORKERS": "1",
    }
    cli = [sys.executable, "-m", "pyfaasd.cli"]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        done = subprocess.run(
            [*cli, "swarm-anchor", "--pin", str(pin)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "made this engine a swarm manager" in done.stdout
        for argv in (
            [*cli, "provider", "--netns", str(pin)],
            ["nsenter", f"--net={pin}", *cli, "nats-server"],
            ["nsenter", f"--net={pin}", *cli, "gateway", "--in-anchor"],
        ):
            log = (tmp_path / f"{argv[0].rsplit('/', 1)[-1]}-{len(processes)}.log").open("ab")
            processes.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
            log.close()
            if len(processes) == 1:
                wait_for(lambda: (state_dir / "secrets" / "basic-auth-password").exists(), 30, 0.2, "credentials")

        def answering() -> bool:
            for proc in processes:
                assert proc.poll() is None, f"{proc.args!r} exited"
            try:
                return http("GET", f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
            except OSError:
                return False

        wait_for(answering, 60, 0.2, "the gateway, published by the anchor, to answer on the host")
        stack = SwarmUp(f"http://127.0.0.1:{port}", state_dir, network, processes[0], tmp_path / "unused.log")
        name = unique_name("in")
        deployed = stack.call("POST", "/system/functions", {"service": name, "image": ECHO})
        assert deployed.status == 202, deployed.text
        reply = http("POST", f"http://127.0.0.1:{port}/function/{name}", b"via the units", timeout=30)
        assert (reply.status, reply.json()["body"]) == (200, "via the units")
        # an async call, queued on the NATS unit's JetStream and run
        stack.async_call_is_run(name, b"q", "the async call to be delivered through the NATS unit's server")
        assert processes[1].poll() is None  # nats-server itself (exec'd), still serving
        assert stack.call("DELETE", "/system/functions", {"functionName": name}).status == 200
        # the anchor goes (dockerd restarted, say): the provider stops with status 1, for systemd to restart it
        # (and the gateway, PartOf it) after a new swarm-anchor
        docker("rm", "-f", f"pyfaasd-anchor-{network}")
        assert processes[0].wait(30) == 1
        assert "the anchor (pid" in "".join(p.read_text() for p in tmp_path.glob("*-0.log"))  # the provider's
    finally:
        stop_processes(processes, 30)
        subprocess.run(["umount", str(pin)], capture_output=True, check=False)
        remove_stack(network, had_gwbridge)
        for path in sorted(tmp_path.glob("*.log")):
            print(f"== {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-20:]))


def test_up_stops_with_status_1_when_its_anchor_goes(swarm_up: SwarmUp) -> None:
    """The anchor's namespace is the stack's only way to the overlay and to the host's clients: when the anchor
    goes (removed, or dockerd restarted), ``up`` says so and exits 1 at once, for a supervisor to start it anew."""

    def answering() -> bool:
        assert swarm_up.process.poll() is None, swarm_up.output()
        try:
            return http("GET", f"{swarm_up.url}/healthz", timeout=5).status == 200
        except OSError:
            return False

    wait_for(answering, 60, 0.2, "pyfaasd up --backend swarm to answer on the host")
    docker("rm", "-f", f"pyfaasd-anchor-{swarm_up.network}")
    assert swarm_up.process.wait(30) == 1
    assert "anchor_gone" in swarm_up.log.read_text()
    assert "Traceback" not in swarm_up.log.read_text()
