"""The whole stack as a user meets it: ``pyfaasd up`` driven only over HTTP, the way faas-cli does (proxy/*.go),
on each backend (tests/e2e/conftest.py)."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.code_support import DEP, REQUIREMENT, make_wheel
from tests.provider_harness import ProviderProcess, Reply, http, wait_for
from tests.stack_fixtures import DEV_ON_SWARM, ECHO, REQUIREMENTS_ON_SWARM, MakeStack, docker_only

pytestmark = pytest.mark.docker

FAAS_CLI = {"User-Agent": "faas-cli/0.17.0"}


def invoke(stack: ProviderProcess, path: str, body: bytes | None = None, method: str = "POST") -> Reply:
    headers = {**FAAS_CLI, "Content-Type": "text/plain"}
    return http(method, f"{stack.url}/function/{path}", body, headers, timeout=30)


def faas_cli_deploy(stack: ProviderProcess, body: dict[str, object]) -> int:
    """faas-cli deploy's default: PUT (rolling update), and POST when the function does not exist yet."""
    reply = stack.call("PUT", "/system/functions", body)
    if reply.status == 404:
        reply = stack.call("POST", "/system/functions", body)
    assert reply.status in (200, 202), (reply.status, reply.text)  # the only codes faas-cli counts as success
    return reply.status


def test_faas_cli_flow(make_stack: MakeStack, name: str, backend: str) -> None:
    stack = make_stack()

    # login: GET /system/functions with basic auth; a wrong password is 401
    assert stack.call("GET", "/system/functions").status == 200
    bad = http(
        "GET",
        f"{stack.url}/system/functions",
        headers={"Authorization": "Basic " + base64.b64encode(b"admin:x").decode()},
    )
    assert bad.status == 401
    assert bad.headers["WWW-Authenticate"] == 'Basic realm="Restricted"'

    # deploy: PUT → 404 → POST
    spec: dict[str, object] = {"service": name, "image": ECHO, "labels": {"app": name}, "envVars": {"K": "v"}}
    assert stack.call("PUT", "/system/functions", spec).status == 404
    faas_cli_deploy(stack, spec)

    # invoke, always with the namespace suffix
    reply = invoke(stack, f"{name}.openfaas-fn/sub/path?x=1", b"hi there")
    assert reply.status == 200, reply.text
    echoed = reply.json()
    assert (echoed["method"], echoed["path"], echoed["body"]) == ("POST", "/sub/path?x=1", "hi there")
    assert echoed["headers"]["X-Forwarded-Prefix"] == f"/function/{name}.openfaas-fn"
    assert "X-Call-Id" in echoed["headers"]
    assert invoke(stack, name, method="GET").status == 200  # the bare name works too

    # list and describe
    listed = {f["name"]: f for f in stack.call("GET", "/system/functions").json()}
    assert listed[name]["availableReplicas"] == 1
    assert listed[name]["invocationCount"] >= 2
    assert listed[name]["labels"] == {"faas_function": name, "app": name}
    described = stack.call("GET", f"/system/function/{name}?namespace=openfaas-fn&usage=1")
    assert described.status == 200
    assert described.json()["availableReplicas"] == 1
    assert stack.call("GET", f"/system/function/{name}x?namespace=openfaas-fn").status == 404

    # pyfaasd status sees both daemons and the function
    out = subprocess.run(
        [sys.executable, "-m", "pyfaasd.cli", "status", "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    status = json.loads(out.stdout)
    if backend == "docker":
        assert status["bridge"]["up"]
    else:
        assert status["swarm"]["anchor"]["running"]
    assert {"name": name, "namespace": "openfaas-fn", "image": ECHO, "replicas": 1, "available": 1} in status[
        "functions"
    ]

    # version
    info = stack.call("GET", "/system/info").json()
    assert info["provider"]["provider"] == "pyfaasd"
    assert info["provider"]["orchestration"] == backend
    assert "release" in info["version"]

    # secrets: create, list, update, remove
    secret = f"{name}-token"
    assert stack.call("POST", "/system/secrets", {"name": secret, "value": "v1"}).status in (200, 201, 202)
    assert stack.call("POST", "/system/secrets", {"name": secret, "value": "v1"}).status == 409  # --replace → PUT
    assert stack.call("PUT", "/system/secrets", {"name": secret, "value": "v2"}).status in (200, 202)
    assert {"name": secret, "namespace": "openfaas-fn"} in stack.call("GET", "/system/secrets").json()
    assert stack.call("DELETE", "/system/secrets", {"name": secret, "namespace": "openfaas-fn"}).status in (200, 202)

    # logs: NDJSON with what the function printed
    def logged() -> list[dict[str, str]]:
        reply = stack.call("GET", f"/system/logs?name={name}&namespace=openfaas-fn&follow=false&tail=-1")
        assert reply.status == 200
        return [json.loads(line) for line in reply.text.splitlines()]

    lines = wait_for(lambda: [m for m in logged() if "/sub/path" in m["text"]], what="the invocation in the logs")
    assert set(lines[0]) == {"name", "namespace", "instance", "timestamp", "text"}

    # rolling update through PUT, then remove
    assert faas_cli_deploy(stack, {**spec, "envVars": {"K": "v2"}}) in (200, 202)
    assert stack.call("GET", f"/system/function/{name}").json()["envVars"] == {"K": "v2"}
    assert invoke(stack, f"{name}.openfaas-fn").status == 200
    assert stack.call("DELETE", "/system/functions", {"functionName": name, "namespace": "openfaas-fn"}).status == 200
    assert stack.call("DELETE", "/system/functions", {"functionName": name}).status == 404
    wait_for(lambda: stack.replicas_gone(name), timeout=30, what="the replica to stop")  # swarm: it drains first
    gone = invoke(stack, f"{name}.openfaas-fn")
    assert gone.status == 404
    assert gone.headers.get("X-OpenFaaS-Internal") == "gateway"


def test_two_replicas_share_the_load_and_scale_from_zero(make_stack: MakeStack, name: str) -> None:
    stack = make_stack()
    # 200 requests in a row are far past 5/s per replica: the autoscaler would add replicas but for max.
    faas_cli_deploy(stack, {"service": name, "image": ECHO, "labels": {"com.openfaas.scale.max": "2"}})
    reply = stack.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 2})
    assert reply.status == 200, reply.text
    served: Counter[str] = Counter()
    for _ in range(200):
        reply = invoke(stack, f"{name}.openfaas-fn", method="GET")
        assert reply.status == 200
        served[reply.json()["hostname"]] += 1
    assert len(served) == 2
    assert min(served.values()) >= 50  # round robin, roughly even

    assert stack.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 0}).status == 200
    # docker: the replicas are gone when the scale answers; swarm: once their tasks have stopped (they drain first)
    wait_for(lambda: stack.replicas_gone(name), timeout=30, what="no replica left")
    reply = invoke(stack, f"{name}.openfaas-fn", method="GET")  # held until a replica is ready
    assert reply.status == 200
    # swarm: the provider counts a task available once its own probe has seen it (every 0.5 s)
    described = lambda: stack.call("GET", f"/system/function/{name}").json()  # noqa: E731
    wait_for(lambda: described().get("availableReplicas") == 1, timeout=5, what="one available replica")


def test_sigterm_finishes_the_request_in_flight_and_a_restart_serves_without_redeploy(
    make_stack: MakeStack, name: str
) -> None:
    stack = make_stack()
    faas_cli_deploy(stack, {"service": name, "image": ECHO})
    result: list[Reply] = []
    slow = threading.Thread(target=lambda: result.append(invoke(stack, f"{name}.openfaas-fn?sleep=1.5", method="GET")))
    slow.start()
    started = f'gateway_function_invocation_started{{function_name="{name}.openfaas-fn"}} 1'
    wait_for(lambda: started in http("GET", f"{stack.url}/metrics").text, timeout=10, what="the slow request to start")
    pid_file = stack.state_dir / "up.pid"
    assert stack.proc is not None
    assert pid_file.read_text().strip() == str(stack.proc.pid)
    assert stack.stop(signal.SIGTERM) == 0
    assert not pid_file.exists()  # a later `kill $(cat ...)` can never hit a reused pid
    slow.join(10)
    assert [r.status for r in result] == [200]
    assert len(stack.containers(running_only=True)) == 1  # the function outlives the stack

    stack.start()
    reply = invoke(stack, f"{name}.openfaas-fn", b"again")
    assert reply.status == 200
    assert reply.json()["body"] == "again"
    assert len(stack.containers()) == 1


def test_deploying_the_same_stack_file_again_keeps_the_running_replicas(
    make_stack: MakeStack, name: str, tmp_path: Path
) -> None:
    """What a second scripts/run does: the stack file deployed again over functions already running."""
    stack = make_stack()
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(
        f"version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  {name}:\n    image: {ECHO}\n"
        "    labels:\n      com.openfaas.scale.min: '2'\n"
    )
    deploy = [sys.executable, "-m", "pyfaasd.cli", "deploy", "-f", str(stack_file), "--gateway", stack.url]
    deploy += ["--state-dir", str(stack.state_dir)]
    subprocess.run(deploy, check=True, capture_output=True, timeout=60)
    first = sorted(c["ID"] for c in stack.containers(running_only=True))
    assert len(first) == 2

    again = subprocess.run(deploy, check=True, capture_output=True, text=True, timeout=60)
    assert "Deployed. 202" in again.stdout
    assert sorted(c["ID"] for c in stack.containers(running_only=True)) == first
    assert invoke(stack, f"{name}.openfaas-fn", b"still").status == 200


def test_a_handler_file_deployed_with_the_cli_answers_through_the_gateway(
    make_stack: MakeStack, name: str, tmp_path: Path
) -> None:
    """The README's short path: write handler.py, `pyfaasd deploy handler.py --name x`, curl it."""
    stack = make_stack()
    handler = tmp_path / "handler.py"
    handler.write_text("def run(x, y):\n    return {'sum': x + y}\n")
    deploy = [sys.executable, "-m", "pyfaasd.cli", "deploy", str(handler), "--name", name]
    deploy += ["--gateway", stack.url, "--state-dir", str(stack.state_dir)]
    result = subprocess.run(deploy, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"URL: {stack.url}/function/{name}" in result.stdout
    reply = http("POST", f"{stack.url}/function/{name}", json.dumps({"x": 3, "y": 5}).encode(), FAAS_CLI)
    assert (reply.status, reply.json()) == (200, {"sum": 8})


@docker_only(DEV_ON_SWARM)
def test_pyfaasd_dev_serves_each_edit_streams_the_output_and_leaves_nothing(
    make_stack: MakeStack, name: str, tmp_path: Path
) -> None:
    stack = make_stack()
    live = tmp_path / "live"
    live.mkdir()
    handler = live / "handler.py"
    handler.write_text("def handle(event, context):\n    print('called v1', flush=True)\n    return 'v1'\n")
    command = [sys.executable, "-m", "pyfaasd.cli", "dev", str(live), "--name", name, "--env", "GREETING=hi"]
    command += ["--gateway", stack.url, "--state-dir", str(stack.state_dir)]
    dev = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: invoke(stack, name, method="GET").status == 200, timeout=30, what="the dev function")
        assert invoke(stack, name, method="GET").text == "v1"
        handler.write_text("import os\n\ndef handle(event, context):\n    return 'v2 ' + os.environ['GREETING']\n")
        edited = time.monotonic()
        wait_for(lambda: invoke(stack, name, method="GET").text == "v2 hi", timeout=5, what="the edit to load")
        print(f"pyfaasd dev picked up the edit in {time.monotonic() - edited:.2f}s")
    finally:
        dev.send_signal(signal.SIGINT)
        stdout, stderr = dev.communicate(timeout=30)
    assert dev.returncode == 0, stderr
    assert "called v1" in stdout  # the function's output, streamed to the terminal
    assert f"Removed {name}.openfaas-fn." in stdout
    assert not (live / ".pyfaasd-dev").exists()
    assert [c for c in stack.containers() if f"com.pyfaasd.function={name}" in c["Labels"]] == []
    assert invoke(stack, name, method="GET").status == 404


@docker_only(REQUIREMENTS_ON_SWARM)
def test_a_stack_file_for_the_python3_http_template_deploys_as_code_with_requirements(
    make_stack: MakeStack, name: str, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    stack = make_stack(PYFAASD_PIP_FIND_LINKS=str(wheels))
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(
        f"from {DEP} import VALUE\n\ndef handle(event, context):\n    return {{'statusCode': 200, 'body': VALUE}}\n"
    )
    (tmp_path / "fn" / "requirements.txt").write_text(REQUIREMENT + "\n")
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(
        f"version: 1.0\nprovider:\n  name: openfaas\nfunctions:\n  {name}:\n    lang: python3-http\n"
        f"    handler: ./fn\n    image: registry.example/{name}:latest\n"
    )
    deploy = [sys.executable, "-m", "pyfaasd.cli", "deploy", "-f", str(stack_file), "--gateway", stack.url]
    deploy += ["--state-dir", str(stack.state_dir)]
    result = subprocess.run(deploy, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.stdout, result.stderr, stack.log_tail())
    assert "Requirements: installed." in result.stdout
    reply = invoke(stack, name, method="GET")
    assert (reply.status, reply.text) == (200, "from a wheel")


def test_volumes_through_the_gateway_with_faas_cli_annotations(make_stack: MakeStack, name: str) -> None:
    stack = make_stack()
    volume = f"v{name}"
    assert stack.call("POST", "/system/volumes", {"name": volume}).status == 201
    spec: dict[str, object] = {
        "service": name,
        "image": ECHO,
        "annotations": {f"com.pyfaasd.volume.{volume}": "/mnt/data", "com.pyfaasd.volume.auto": "/mnt/own:ro"},
    }
    faas_cli_deploy(stack, spec)
    listed = {v["name"]: v for v in stack.call("GET", "/system/volumes").json()}
    assert listed[volume]["functions"] == [f"{name}.openfaas-fn"]
    assert listed[f"auto-{name}-openfaas-fn"]["auto"] == f"{name}.openfaas-fn"
    assert stack.call("DELETE", "/system/volumes", {"name": volume}).status == 409
    assert stack.call("DELETE", "/system/functions", {"functionName": name}).status in (200, 202)
    for gone in (volume, f"auto-{name}-openfaas-fn"):
        assert stack.call("DELETE", "/system/volumes", {"name": gone}).status == 200
