"""PYFAASD_BACKEND=swarm end to end on a single-node swarm this test makes (and leaves).

The provider and the gateway run as host processes inside the network namespace of an "anchor" container
attached to the overlay (nsenter), the way docs/swarm.md describes: from there they reach the tasks' overlay
addresses; the test reaches the gateway through the anchor's published port. ``docker swarm init`` changes the
engine for everyone on the machine, so the swarm lives only while this module runs (under the Docker lock of
.ci/run) and is left in a ``finally``; an engine that is already in a swarm is not touched (the test skips).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.swarm_dns import CACHE_S
from netconf import read_hosts
from tests.docker_support import require_image, unique_name
from tests.helpers import ROOT, docker_available, free_port
from tests.provider_harness import Reply, http, wait_for, wait_for_hostnames
from tests.swarm_support import docker, leave_swarm, remove_overlay, require_no_swarm, stop_processes

pytestmark = [pytest.mark.docker, pytest.mark.netns]

ECHO = "pyfaasd/fn-echo-http:latest"
RUNTIME = "pyfaasd/runtime-python:latest"
NETWORK_LABEL = "com.pyfaasd.swarm-network"
GATEWAY_PORT = 8080
PROVIDER_PORT = 8081


@pytest.fixture(scope="module")
def swarm() -> Iterator[None]:
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        pytest.skip("needs root and nsenter (the services run in the overlay's network namespace)")
    if not docker_available():
        pytest.skip("needs a running Docker Engine")
    require_image(ECHO)
    require_image(RUNTIME)
    had_gwbridge = require_no_swarm("it")
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        leave_swarm(had_gwbridge)


@pytest.fixture(scope="module")
def overlays(swarm: object) -> Iterator[list[str]]:
    """The overlays of the module's stacks, removed before it leaves the swarm, all at once: an overlay goes only
    once the task containers on it have drained and stopped (seconds each), so not once per test."""
    made: list[str] = []
    yield made
    for network in made:
        remove_overlay(network)  # waits for the task containers to go, so their volumes are free
        for volume in docker("volume", "ls", "-q", "--filter", f"label={NETWORK_LABEL}={network}").split():
            docker("volume", "rm", volume, check=False)


@dataclass
class SwarmStack:
    network: str
    state_dir: Path
    gateway_url: str
    processes: list[subprocess.Popen[bytes]]

    @property
    def authorization(self) -> str:
        secrets_dir = self.state_dir / "secrets"
        user = (secrets_dir / "basic-auth-user").read_text().strip()
        password = (secrets_dir / "basic-auth-password").read_text().strip()
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(self, method: str, path: str, payload: object = None) -> Reply:
        headers = {"Authorization": self.authorization}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        return http(method, f"{self.gateway_url}{path}", body, headers, timeout=60)

    def hosts(self, name: str) -> list[str]:
        return [str(ip) for ip in read_hosts(self.state_dir / "hosts").lookup(f"{name}.openfaas-fn")]

    def services(self) -> list[str]:
        out = docker("service", "ls", "--filter", f"label={NETWORK_LABEL}={self.network}", "--format", "{{.Name}}")
        return [line for line in out.splitlines() if line]

    def task_containers(self, service: str) -> int:
        return len(docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").split())

    def running_tasks(self, service: str) -> int:
        out = docker("service", "ps", service, "--filter", "desired-state=running", "--format", "{{.CurrentState}}")
        return sum(1 for line in out.splitlines() if line.startswith("Running"))


@pytest.fixture
def stack(swarm: object, overlays: list[str], tmp_path: Path) -> Iterator[SwarmStack]:
    network = unique_name("pft-overlay")
    docker("network", "create", "--driver", "overlay", "--attachable", "--label", f"{NETWORK_LABEL}={network}", network)
    overlays.append(network)
    anchor = unique_name("pft-anchor")
    processes: list[subprocess.Popen[bytes]] = []
    made = SwarmStack(network, tmp_path / "state", "", processes)
    try:
        docker(
            "run", "-d", "--name", anchor, "--network", network, "-p", f"127.0.0.1::{GATEWAY_PORT}",
            "--entrypoint", "sleep", ECHO, "infinity",
        )  # fmt: skip
        pid = docker("inspect", "--format", "{{.State.Pid}}", anchor)
        port = docker("port", anchor, f"{GATEWAY_PORT}/tcp").splitlines()[0].rsplit(":", 1)[1]
        made.gateway_url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "PYFAASD_STATE_DIR": str(made.state_dir),
            "PYFAASD_LOG_LEVEL": "debug",
            "PYFAASD_BACKEND": "swarm",
            "PYFAASD_SWARM_NETWORK": network,
            "PYFAASD_PROVIDER_ADDR": f"127.0.0.1:{PROVIDER_PORT}",
            "PYFAASD_PROVIDER_URL": f"http://127.0.0.1:{PROVIDER_PORT}",
            "PYFAASD_GATEWAY_ADDR": f"0.0.0.0:{GATEWAY_PORT}",
            "PYFAASD_AUTOSCALE": "false",
        }
        enter = ["nsenter", f"--net=/proc/{pid}/ns/net", "--", sys.executable]
        for module in ("provider", "gateway"):
            log = (tmp_path / f"{module}.log").open("ab")
            # the gateway finds tasks through Swarm's DNS: it is given a hosts file that never exists
            own = {"PYFAASD_HOSTS_FILE": str(tmp_path / "no-hosts-file")} if module == "gateway" else {}
            processes.append(
                subprocess.Popen(
                    [*enter, "-m", module], env={**env, **own}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
                )
            )
            log.close()
            if module == "provider":
                wait_for(lambda: (made.state_dir / "secrets" / "basic-auth-password").exists(), 30, what="credentials")

        def gateway_up() -> bool:
            for proc in processes:
                if proc.poll() is not None:
                    raise AssertionError(f"{proc.args!r} exited: {logs(tmp_path)}")
            try:
                return made.call("GET", "/system/info").status == 200
            except OSError:
                return False

        wait_for(gateway_up, 30, 0.2, "the gateway and the provider to answer")
        yield made
    finally:
        stop_processes(processes, 15)
        for service in made.services():
            docker("service", "rm", service, check=False)
        for secret in docker("secret", "ls", "-q", "--filter", f"label={NETWORK_LABEL}={network}").split():
            docker("secret", "rm", secret, check=False)
        for config in docker("config", "ls", "-q", "--filter", f"label={NETWORK_LABEL}={network}").split():
            docker("config", "rm", config, check=False)
        docker("rm", "-f", anchor, check=False)
        print(logs(tmp_path))


def logs(tmp_path: Path) -> str:
    return "\n".join(
        f"== {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
        for p in sorted(tmp_path.glob("*.log"))
    )


def test_functions_are_swarm_services_reached_through_the_gateway(stack: SwarmStack) -> None:
    info = stack.call("GET", "/system/info")
    assert info.json()["provider"]["orchestration"] == "swarm"

    name = unique_name("sw")
    spec = {"service": name, "image": ECHO, "labels": {"app": name}, "constraints": ["node.role == manager"]}
    assert stack.call("PUT", "/system/functions", spec).status == 404  # faas-cli: PUT, then POST
    deployed = stack.call("POST", "/system/functions", spec)
    assert deployed.status == 202, deployed.text

    # a Swarm service with the function's labels, dnsrr, the constraint, on the overlay; a healthy task published
    service = json.loads(docker("service", "inspect", f"openfaas-fn_{name}"))[0]["Spec"]
    assert service["Labels"]["com.pyfaasd.function"] == name
    assert service["Labels"]["app"] == name
    assert service["EndpointSpec"]["Mode"] == "dnsrr"
    assert service["TaskTemplate"]["Placement"]["Constraints"] == ["node.role == manager"]
    assert len(stack.hosts(name)) == 1

    reply = http("POST", f"{stack.gateway_url}/function/{name}.openfaas-fn/p?x=1", b"over the overlay", timeout=30)
    assert reply.status == 200, reply.text
    echoed = reply.json()
    assert (echoed["method"], echoed["path"], echoed["body"]) == ("POST", "/p?x=1", "over the overlay")

    # scale: replicas are tasks; both are published and serve
    assert stack.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 2}).status == 200
    wait_for(lambda: len(stack.hosts(name)) == 2, 30, 0.2, "two tasks in the hosts file")
    assert stack.running_tasks(f"openfaas-fn_{name}") == 2
    status = stack.call("GET", f"/system/function/{name}").json()
    assert (status["replicas"], status["availableReplicas"]) == (2, 2)
    usage = stack.call("GET", f"/system/function/{name}?usage=1").json()["usage"]
    assert usage["totalMemoryBytes"] > 0  # both tasks' containers, read from this node's engine
    # the gateway finds both through Swarm's DNS (answers cached for a second) and takes turns
    wait_for_hostnames(
        f"{stack.gateway_url}/function/{name}", 2, 10, "requests through the gateway served by both tasks"
    )
    listed = {f["name"]: f for f in stack.call("GET", "/system/functions").json()}
    assert listed[name]["labels"]["app"] == name

    # a rolling update (new tasks healthy before the old ones stop) keeps the function answering throughout
    updated = stack.call("PUT", "/system/functions", {**spec, "envVars": {"K": "v2"}})
    assert updated.status == 202, updated.text
    assert stack.call("GET", f"/system/function/{name}").json()["envVars"] == {"K": "v2"}

    def update_state() -> str:
        found = json.loads(docker("service", "inspect", f"openfaas-fn_{name}"))[0]
        return str(found.get("UpdateStatus", {}).get("State", ""))

    answers: list[int] = []
    deadline = time.monotonic() + 90
    while update_state() != "completed":
        assert time.monotonic() < deadline, "the rolling update did not complete within 90s"
        answers.append(http("GET", f"{stack.gateway_url}/function/{name}", timeout=30).status)
    assert answers
    assert set(answers) == {200}, answers
    wait_for(lambda: len(stack.hosts(name)) == 2, 30, 0.2, "the two new tasks in the hosts file")

    # logs: the service's, every task's, with the task as the instance
    tasks = set(docker("service", "ps", "-q", "--no-trunc", f"openfaas-fn_{name}").split())

    def log_lines() -> list[dict[str, str]]:
        reply = stack.call("GET", f"/system/logs?name={name}&namespace=openfaas-fn&tail=50&follow=false")
        assert reply.status == 200, reply.text
        return [json.loads(line) for line in reply.text.splitlines() if line.strip()]

    lines = wait_for(log_lines, 30, 0.5, "log lines")
    assert {line["name"] for line in lines} == {name}
    assert {line["instance"] for line in lines} <= tasks
    # follow: the history first, then the stream stays open
    follow = urllib.request.Request(
        f"{stack.gateway_url}/system/logs?name={name}&tail=1&follow=true",
        headers={"Authorization": stack.authorization},
    )
    with urllib.request.urlopen(follow, timeout=30) as streaming:
        first = json.loads(streaming.readline())
        assert (first["name"], first["instance"] in tasks) == (name, True)

    # the provider's 404 for a missing function, as the gateway relays it for either backend (OpenFaaS's 501)
    assert stack.call("GET", "/system/logs?name=nope&follow=false").status == 501

    # a missing secret is refused with a 400 naming it, and leaves no service behind
    other = unique_name("sw")
    refused = stack.call("POST", "/system/functions", {"service": other, "image": ECHO, "secrets": ["nope"]})
    assert refused.status == 400
    assert "nope" in refused.text
    assert f"openfaas-fn_{other}" not in stack.services()

    # scale to zero, then a request: the gateway scales the service from zero and the request is served
    assert stack.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 0}).status == 200
    wait_for(lambda: stack.hosts(name) == [], 30, 0.2, "no task in the hosts file")
    # Swarm takes a task out of its DNS before it stops it, so the gateway's answers (cached CACHE_S) lose
    # the tasks while they still drain; once their containers have stopped, a request has to scale from zero
    wait_for(lambda: stack.task_containers(f"openfaas-fn_{name}") == 0, 60, 0.2, "the tasks' containers to stop")
    time.sleep(CACHE_S + 0.5)
    assert http("GET", f"{stack.gateway_url}/function/{name}", timeout=60).status == 200
    assert stack.call("GET", f"/system/function/{name}").json()["replicas"] == 1

    # delete: the service and its hosts lines go
    assert stack.call("DELETE", "/system/functions", {"functionName": name}).status == 200
    assert stack.hosts(name) == []
    assert f"openfaas-fn_{name}" not in stack.services()
    assert stack.call("GET", f"/system/function/{name}").status == 404


def test_secrets_are_swarm_secrets_mounted_where_functions_read_them(stack: SwarmStack) -> None:
    secret = unique_name("db")
    assert stack.call("POST", "/system/secrets", {"name": secret, "value": "one"}).status == 201
    assert stack.call("POST", "/system/secrets", {"name": secret, "value": "one"}).status == 409
    assert {"name": secret, "namespace": "openfaas-fn"} in stack.call("GET", "/system/secrets").json()

    name = unique_name("sw")
    deployed = stack.call("POST", "/system/functions", {"service": name, "image": ECHO, "secrets": [secret]})
    assert deployed.status == 202, deployed.text

    def mounted() -> str:
        ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name=openfaas-fn_{name}").split()
        if len(ids) != 1:
            return ""  # the old task still stopping, or the new one not there yet
        return docker("exec", ids[0], "cat", f"/var/openfaas/secrets/{secret}", check=False)

    assert mounted() == "one"  # readable by the function's own (non-root) user

    # an update makes a new Swarm secret and rolls the function onto it
    assert stack.call("PUT", "/system/secrets", {"name": secret, "value": "two"}).status == 200
    wait_for(lambda: mounted() == "two", 60, 0.5, "the function to be rolled onto the new value")
    swarm_secrets = docker("secret", "ls", "--filter", f"label=com.pyfaasd.secret={secret}", "--format", "{{.Name}}")
    assert len(swarm_secrets.split()) == 1  # the old value is removed

    in_use = stack.call("DELETE", "/system/secrets", {"name": secret})
    assert in_use.status == 409
    assert name in in_use.text
    assert stack.call("DELETE", "/system/functions", {"functionName": name}).status == 200
    assert stack.call("DELETE", "/system/secrets", {"name": secret}).status == 200
    assert docker("secret", "ls", "--filter", f"label=com.pyfaasd.secret={secret}", "-q") == ""


def test_a_provider_not_attached_to_the_overlay_refuses_to_start(stack: SwarmStack, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYFAASD_STATE_DIR": str(tmp_path / "host-state"),
        "PYFAASD_BACKEND": "swarm",
        "PYFAASD_SWARM_NETWORK": stack.network,
        "PYFAASD_PROVIDER_ADDR": f"127.0.0.1:{free_port()}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "provider"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"not attached to the overlay network {stack.network}" in done.stdout + done.stderr


def test_scale_down_under_load_fails_no_request(stack: SwarmStack) -> None:
    """Swarm drains a task it removes: it takes the task out of its DNS answer first, waits, then sends SIGTERM
    with the stop grace period, and the watchdog on SIGTERM keeps serving for healthcheck_interval, then stops
    accepting and finishes what is in flight. The gateway's answers are at most CACHE_S old, so it stops sending
    to the task before the task stops accepting. Under steady load (some requests slow, so in flight at SIGTERM),
    a scale from 2 to 1 fails no request."""
    name = unique_name("dr")
    spec = {"service": name, "image": ECHO, "labels": {"com.openfaas.scale.min": "2"}}
    assert stack.call("POST", "/system/functions", spec).status == 202
    assert stack.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 2}).status == 200
    wait_for_hostnames(f"{stack.gateway_url}/function/{name}", 2, 15, "both tasks to serve")

    stop = threading.Event()
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def load(slow: bool) -> None:
        path = f"/function/{name}?sleep=0.5" if slow else f"/function/{name}"
        while not stop.is_set():
            try:
                reply = http("GET", f"{stack.gateway_url}{path}", timeout=30)
                outcome = (reply.status, reply.json()["hostname"] if reply.status == 200 else reply.text)
            except OSError as e:
                outcome = (0, repr(e))
            with lock:
                results.append(outcome)

    workers = [threading.Thread(target=load, args=(i % 2 == 0,)) for i in range(6)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)
        scaled = stack.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 1})
        assert scaled.status == 200, scaled.text
        wait_for(lambda: stack.task_containers(f"openfaas-fn_{name}") == 1, 60, 0.2, "one task left running")
        time.sleep(CACHE_S + 1.0)  # and a while on the one left
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed[:5]
    assert len({host for _status, host in results}) == 2  # both served during the test, the removed one included
    assert len(results) > 50
    print(f"scale down under load: {len(results)} requests, none failed")
    assert stack.call("DELETE", "/system/functions", {"functionName": name}).status == 200


def test_a_volume_is_a_service_mount_that_keeps_what_a_call_wrote_across_an_update_and_a_scale(
    stack: SwarmStack,
) -> None:
    volume = unique_name("vol")
    made = stack.call("POST", "/system/volumes", {"name": volume})
    assert made.status == 201, made.text
    assert made.json()["type"] == "local"

    # a function that appends each request's body to a file on the volume and answers the whole file
    name = unique_name("sv")
    spec = {
        "service": name,
        "image": RUNTIME,
        "envVars": {"mode": "streaming"},
        "envProcess": "sh -c 'cat >> /data/log; cat /data/log'",
        "annotations": {f"com.pyfaasd.volume.{volume}": "/data"},
    }
    deployed = stack.call("POST", "/system/functions", spec)
    assert deployed.status == 202, deployed.text
    mounts = json.loads(docker("service", "inspect", f"openfaas-fn_{name}"))[0]["Spec"]["TaskTemplate"][
        "ContainerSpec"
    ]["Mounts"]
    assert [(m["Type"], m["Target"], m["VolumeOptions"]["DriverConfig"]["Name"]) for m in mounts] == [
        ("volume", "/data", "local")
    ]
    first = http("POST", f"{stack.gateway_url}/function/{name}", b"one;", timeout=30)
    assert (first.status, first.text) == (200, "one;")
    listed = {v["name"]: v for v in stack.call("GET", "/system/volumes").json()}
    assert listed[volume]["functions"] == [f"{name}.openfaas-fn"]

    # a rolling update replaces the task: the new one reads what the old one wrote
    old_tasks = set(docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name=openfaas-fn_{name}").split())
    updated = stack.call("PUT", "/system/functions", {**spec, "envVars": {"mode": "streaming", "K": "v2"}})
    assert updated.status == 202, updated.text

    def rolled() -> bool:
        now = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name=openfaas-fn_{name}").split()
        return bool(now) and not old_tasks & set(now)

    wait_for(rolled, 90, 0.5, "the update to replace the task")
    second = http("POST", f"{stack.gateway_url}/function/{name}", b"two;", timeout=30)
    assert (second.status, second.text) == (200, "one;two;")

    # scaled to 2: both tasks mount the same volume (one node here) and see every write
    assert stack.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 2}).status == 200
    wait_for(lambda: len(stack.hosts(name)) == 2, 30, 0.2, "two tasks in the hosts file")
    ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name=openfaas-fn_{name}").split()
    assert len(ids) == 2
    assert {docker("exec", cid, "cat", "/data/log") for cid in ids} == {"one;two;"}

    # in use: the volume stays; once the function is gone it can be deleted
    in_use = stack.call("DELETE", "/system/volumes", {"name": volume})
    assert in_use.status == 409
    assert name in in_use.text
    assert stack.call("DELETE", "/system/functions", {"functionName": name}).status == 200
    # Swarm removes the tasks' (stopped) containers a little after the service; until then the volume is in use
    service_label = f"label=com.docker.swarm.service.name=openfaas-fn_{name}"
    wait_for(lambda: docker("ps", "-aq", "--filter", service_label) == "", 60, 0.2, "the tasks' containers to go")
    assert stack.call("DELETE", "/system/volumes", {"name": volume}).status == 200
    assert docker("volume", "ls", "-q", "--filter", f"label=com.pyfaasd.volume={volume}") == ""

    # a volume that does not exist: 400 naming it, no service made
    refused = stack.call("POST", "/system/functions", {**spec, "annotations": {"com.pyfaasd.volume.nope": "/data"}})
    assert refused.status == 400
    assert "nope" in refused.text
    assert f"openfaas-fn_{name}" not in stack.services()


def _bundle(answer: str) -> bytes:
    """A code bundle of three files: the handler, a package with an empty ``__init__.py`` and a module."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            "handler.py",
            "from lib.util import ANSWER\n\n\ndef handle(event, context):\n"
            "    return {'statusCode': 200, 'body': ANSWER, 'headers': {'Content-Type': 'text/plain'}}\n",
        )
        archive.writestr("lib/__init__.py", "")
        archive.writestr("lib/util.py", f"ANSWER = {answer!r}\n")
    return out.getvalue()


def test_a_code_function_runs_from_swarm_configs_rolls_to_new_code_and_leaves_nothing(stack: SwarmStack) -> None:
    def upload(data: bytes) -> str:
        headers = {"Authorization": stack.authorization, "Content-Type": "application/octet-stream"}
        reply = http("POST", f"{stack.gateway_url}/system/code?filename=fn.zip", data, headers, timeout=30)
        assert reply.status in (200, 201), reply.text
        return str(reply.json()["digest"])

    def configs_of(name: str) -> list[str]:
        out = docker("config", "ls", "--filter", f"label=com.pyfaasd.function={name}", "--format", "{{.Name}}")
        return [line for line in out.splitlines() if line]

    runtimes = stack.call("GET", "/system/runtimes").json()
    assert {"name": "python3.11", "image": RUNTIME, "mode": "python"} in runtimes

    name = unique_name("sc")
    first = upload(_bundle("one"))
    spec = {
        "service": name,
        "image": RUNTIME,
        "annotations": {"com.pyfaasd.code": first},
        "readOnlyRootFilesystem": True,  # the configs are mounted into a read-only root
    }
    deployed = stack.call("POST", "/system/functions", spec)
    assert deployed.status == 202, deployed.text
    assert len(configs_of(name)) == 2  # handler.py and lib/util.py; the empty __init__.py is /dev/null
    reply = http("GET", f"{stack.gateway_url}/function/{name}", timeout=30)
    assert (reply.status, reply.text) == (200, "one")
    listed = {b["digest"]: b for b in stack.call("GET", "/system/code").json()}
    assert listed[first]["functions"] == [f"{name}.openfaas-fn"]
    assert stack.call("DELETE", f"/system/code/{first}").status == 409  # in use

    # new code: a rolling update (start-first) onto new configs; the function answers throughout
    second = upload(_bundle("two"))
    updated = stack.call("PUT", "/system/functions", {**spec, "annotations": {"com.pyfaasd.code": second}})
    assert updated.status == 202, updated.text
    answers: list[tuple[int, str]] = []
    deadline = time.monotonic() + 90
    while not answers or answers[-1] != (200, "two"):
        assert time.monotonic() < deadline, f"the update did not reach the new code: {answers[-5:]}"
        got = http("GET", f"{stack.gateway_url}/function/{name}", timeout=30)
        answers.append((got.status, got.text))
        time.sleep(0.1)
    assert {status for status, _ in answers} == {200}, answers
    # the replaced spec's configs stay as Swarm's rollback target; handler.py did not change, so its config is shared
    assert len(configs_of(name)) == 3

    # what Swarm cannot carry: a 400 naming it, nothing made
    with_requirements = io.BytesIO()
    with zipfile.ZipFile(with_requirements, "w") as archive:
        archive.writestr("handler.py", "def handle(event, context):\n    return 'x'\n")
        archive.writestr("requirements.txt", "requests\n")
    other = unique_name("sc")
    refused = stack.call(
        "POST",
        "/system/functions",
        {"service": other, "image": RUNTIME, "annotations": {"com.pyfaasd.code": upload(with_requirements.getvalue())}},
    )
    assert refused.status == 400
    assert "requirements" in refused.text
    assert f"openfaas-fn_{other}" not in stack.services()
    assert configs_of(other) == []

    # delete: no service, no config, no secret of the function left
    assert stack.call("DELETE", "/system/functions", {"functionName": name}).status == 200
    assert f"openfaas-fn_{name}" not in stack.services()
    assert configs_of(name) == []
    assert docker("secret", "ls", "-q", "--filter", f"label={NETWORK_LABEL}={stack.network}") == ""
    assert stack.call("DELETE", f"/system/code/{first}").status == 200  # no longer used
