"""The faas-provider API against the real Docker Engine: deploy, update, scale, secrets, logs, delete."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from typing import Any

import pytest

from tests.integration.provider.conftest import ECHO, HELLO
from tests.provider_harness import ProviderProcess, get, wait_for

pytestmark = pytest.mark.docker


def deploy(provider: ProviderProcess, name: str, image: str = HELLO, **fields: Any) -> None:
    reply = provider.call("POST", "/system/functions", {"service": name, "image": image, **fields})
    assert reply.status == 202, (reply.status, reply.text, provider.log_tail())


def inspect(container_id: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", container_id], capture_output=True, text=True, check=True).stdout
    data: dict[str, Any] = json.loads(out)[0]
    return data


def of(provider: ProviderProcess, name: str, *, running_only: bool = False) -> list[dict[str, str]]:
    return [c for c in provider.containers(running_only=running_only) if f"com.pyfaasd.function={name}" in c["Labels"]]


def test_deploy_is_ready_reachable_and_listed(provider: ProviderProcess, name: str) -> None:
    labels = {"team": "a", "com.openfaas.scale.min": "1"}
    annotations = {"topic": "cron", "empty": ""}
    deploy(provider, name, labels=labels, annotations=annotations, envVars={"GREETING": "hi"})

    # Ready when the deploy answers: the replica is in the hosts file and answers at its IP.
    [ip] = provider.hosts(name)
    reply = get(f"http://{ip}:8080/?name=there")
    assert (reply.status, reply.text) == (200, "Hello, there!\n")

    listed = provider.call("GET", "/system/functions").json()
    mine = [f for f in listed if f["name"] == name]
    assert len(mine) == 1
    status = mine[0]
    assert status["image"] == HELLO
    assert status["namespace"] == "openfaas-fn"
    assert status["labels"] == {"faas_function": name, **labels}  # faas_function added as faas-netes does
    assert status["annotations"] == annotations
    assert status["envVars"] == {"GREETING": "hi"}
    assert (status["replicas"], status["availableReplicas"]) == (1, 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", status["createdAt"])
    # Go omitempty: unset fields are absent, not empty.
    for absent in ("envProcess", "secrets", "limits", "requests", "readOnlyRootFilesystem", "constraints"):
        assert absent not in status
    described = provider.call("GET", f"/system/function/{name}?namespace=openfaas-fn&usage=1")
    assert described.status == 200
    body = described.json()
    usage = body.pop("usage")  # faas-cli describe's usage=1: from the engine's stats
    assert body == status
    assert usage["cpu"] >= 0
    assert 1 << 20 < usage["totalMemoryBytes"] < 512 << 20


def test_container_gets_limits_hardening_env_and_mounts(provider: ProviderProcess, name: str) -> None:
    deploy(
        provider,
        name,
        envProcess="python3 handler.py",
        limits={"memory": "128Mi", "cpu": "500m"},
        requests={"memory": "64Mi"},
        readOnlyRootFilesystem=True,
        labels={"owner": "me"},
    )
    [container] = of(provider, name)
    data = inspect(container["ID"])
    host = data["HostConfig"]
    assert host["Memory"] == 128 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["MemoryReservation"] == 64 * 1024 * 1024
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] > 0
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["NetworkMode"] == "none"
    assert f"{provider.state_dir / 'hosts'}:/etc/hosts:ro" in host["Binds"]
    assert "fprocess=python3 handler.py" in data["Config"]["Env"]
    assert data["Config"]["Labels"]["owner"] == "me"
    status = provider.call("GET", f"/system/function/{name}").json()
    assert status["limits"] == {"memory": "128Mi", "cpu": "500m"}
    assert status["requests"] == {"memory": "64Mi"}
    assert status["readOnlyRootFilesystem"] is True
    assert status["envProcess"] == "python3 handler.py"
    # The function itself can write /tmp but not its root filesystem, and reads the hosts file as /etc/hosts.
    out = subprocess.run(
        [
            "docker",
            "exec",
            container["ID"],
            "sh",
            "-c",
            "touch /tmp/x && (touch /x 2>/dev/null || echo ro) && cat /etc/hosts",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("ro\n")
    assert f"{name}.openfaas-fn" in out


def test_update_is_rolling_and_drops_no_request(provider: ProviderProcess, name: str) -> None:
    deploy(provider, name, envVars={"V": "1"})
    before = {c["ID"] for c in of(provider, name)}
    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def hammer() -> None:
        nonlocal served
        turn = 0
        while not stop.is_set():
            ips = provider.hosts(name)  # like the gateway: whatever the hosts file says right now
            if not ips:
                failures.append("no replica in the hosts file")
                continue
            turn += 1
            try:
                reply = get(f"http://{ips[turn % len(ips)]}:8080/?name=u", timeout=5)
                if reply.status != 200:
                    failures.append(f"status {reply.status}")
                else:
                    served += 1
            except OSError as e:
                failures.append(repr(e))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        time.sleep(0.3)
        reply = provider.call("PUT", "/system/functions", {"service": name, "image": HELLO, "envVars": {"V": "2"}})
        assert reply.status == 202, reply.text
        # The old replica leaves after a grace period; keep the load on until it is gone.
        wait_for(lambda: not ({c["ID"] for c in of(provider, name)} & before), what="old replica removed")
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert served > 20
    status = provider.call("GET", f"/system/function/{name}").json()
    assert status["envVars"] == {"V": "2"}
    assert len(of(provider, name)) == 1


def test_update_of_a_missing_function_is_404(provider: ProviderProcess, name: str) -> None:
    reply = provider.call("PUT", "/system/functions", {"service": name, "image": HELLO})
    assert reply.status == 404
    assert name in reply.text


def test_deploy_of_an_existing_name_is_409(provider: ProviderProcess, name: str) -> None:
    deploy(provider, name)
    reply = provider.call("POST", "/system/functions", {"service": name, "image": HELLO})
    assert reply.status == 409
    assert "already exists" in reply.text
    assert len(of(provider, name)) == 1


def test_scale_zero_three_one(provider: ProviderProcess, name: str) -> None:
    deploy(provider, name)

    def scale(replicas: int) -> None:
        reply = provider.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": replicas})
        assert reply.status == 200, reply.text

    scale(0)
    assert provider.hosts(name) == []
    status = provider.call("GET", f"/system/function/{name}").json()
    assert "replicas" not in status
    assert "availableReplicas" not in status
    assert [f["name"] for f in provider.call("GET", "/system/functions").json()].count(name) == 1
    assert of(provider, name, running_only=True) == []
    assert len(of(provider, name)) == 1  # kept (paused for PYFAASD_ZERO_PAUSE)

    scale(3)
    ips = provider.hosts(name)
    assert len(ips) == 3
    for ip in ips:
        assert get(f"http://{ip}:8080/?name=n").status == 200
    status = provider.call("GET", f"/system/function/{name}").json()
    assert (status["replicas"], status["availableReplicas"]) == (3, 3)

    scale(1)
    assert len(provider.hosts(name)) == 1
    wait_for(lambda: len(of(provider, name)) == 1, what="extra replicas removed")
    assert len(provider.allocations()) >= 1
    assert set(provider.hosts(name)) <= set(ips)


def test_secret_create_mount_update_list_delete(provider: ProviderProcess, name: str) -> None:
    secret = f"{name}-key"
    assert provider.call("POST", "/system/secrets", {"name": secret, "value": "first"}).status == 201
    again = provider.call("POST", "/system/secrets", {"name": secret, "value": "x"})
    assert again.status == 409
    path = provider.state_dir / "secrets" / "openfaas-fn" / secret
    assert path.read_bytes() == b"first"
    assert path.stat().st_mode & 0o777 == 0o640  # root and the secrets group only; the directory is 0700
    assert (path.parent.stat().st_mode & 0o777) == 0o700

    deploy(provider, name, secrets=[secret])
    [container] = of(provider, name)

    def read_in_container() -> str:
        cmd = ["docker", "exec", container["ID"], "cat", f"/var/openfaas/secrets/{secret}"]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    assert read_in_container() == "first"  # readable by the function's non-root user
    raw = "c2Vjb25kCg=="  # base64 of "second\n"
    assert provider.call("PUT", "/system/secrets", {"name": secret, "rawValue": raw}).status == 200
    assert read_in_container() == "second\n"  # the running replica sees the update

    listed = provider.call("GET", "/system/secrets").json()
    assert {"name": secret, "namespace": "openfaas-fn"} in listed
    assert all(set(item) == {"name", "namespace"} for item in listed)
    assert provider.call("PUT", "/system/secrets", {"name": f"{name}-nope", "value": "v"}).status == 404
    assert provider.call("DELETE", "/system/secrets", {"name": f"{name}-nope"}).status == 404
    in_use = provider.call("DELETE", "/system/secrets", {"name": secret, "namespace": "openfaas-fn"})
    assert in_use.status == 409  # its replicas would not restart without it (issue 20)
    assert f"{name}.openfaas-fn" in in_use.text
    assert path.exists()
    assert provider.call("DELETE", "/system/functions", {"functionName": name}).status == 200
    assert provider.call("DELETE", "/system/secrets", {"name": secret, "namespace": "openfaas-fn"}).status == 200
    assert not path.exists()


def test_logs_return_what_the_function_printed(provider: ProviderProcess, name: str) -> None:
    deploy(
        provider,
        name,
        image=ECHO,
        envVars={"mode": "http", "fprocess": "python3 server.py", "upstream_url": "http://127.0.0.1:5000"},
    )
    provider.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 2})
    ips = provider.hosts(name)
    assert len(ips) == 2
    for i, ip in enumerate(ips):
        assert get(f"http://{ip}:8080/marker-{i}").status == 200

    def lines() -> list[dict[str, str]]:
        reply = provider.call("GET", f"/system/logs?name={name}&namespace=openfaas-fn&follow=false&tail=-1")
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in reply.text.splitlines()]

    found = wait_for(
        lambda: (
            [m for m in lines() if "marker-" in m["text"]]
            if len([m for m in lines() if "marker-" in m["text"]]) == 2
            else None
        ),
        what="both markers in the logs",
    )
    assert {m["instance"] for m in found} == {c["Names"] for c in of(provider, name)}
    for message in found:
        assert set(message) == {"name", "namespace", "instance", "timestamp", "text"}
        assert (message["name"], message["namespace"]) == (name, "openfaas-fn")
    everything = lines()
    stamps = [m["timestamp"] for m in everything]
    assert stamps == sorted(stamps, key=lambda s: s.rstrip("Z").ljust(26, "0"))  # merged in time order
    tail = provider.call("GET", f"/system/logs?name={name}&tail=2")
    assert len(tail.text.splitlines()) == 2
    one = provider.call("GET", f"/system/logs?name={name}&instance={found[0]['instance']}")
    assert {json.loads(line)["instance"] for line in one.text.splitlines()} == {found[0]["instance"]}

    # follow: the history, then new lines as they are written
    import urllib.request

    request = urllib.request.Request(
        f"{provider.url}/system/logs?name={name}&follow=true&tail=1",
        headers={"Authorization": provider.authorization},
    )
    with urllib.request.urlopen(request, timeout=10) as stream:
        first = json.loads(stream.readline())
        assert first["name"] == name
        get(f"http://{ips[0]}:8080/followed")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if "followed" in json.loads(stream.readline())["text"]:
                break
        else:
            pytest.fail("the followed line did not arrive")

    for bad in ("tail=x", "since=yesterday", "follow=maybe"):
        reply = provider.call("GET", f"/system/logs?name={name}&{bad}")
        assert reply.status == 422, bad


def test_delete_removes_containers_ips_and_hosts_lines(provider: ProviderProcess, name: str) -> None:
    deploy(provider, name)
    provider.call("POST", f"/system/scale-function/{name}", {"serviceName": name, "replicas": 2})
    ids = {c["ID"] for c in of(provider, name)}
    ips = provider.hosts(name)
    assert len(ids) == 2
    assert len(ips) == 2
    reply = provider.call("DELETE", "/system/functions", {"functionName": name, "namespace": "openfaas-fn"})
    assert reply.status == 200, reply.text
    assert provider.hosts(name) == []
    assert of(provider, name) == []
    assert not (set(provider.allocations()) & set(ips))
    assert provider.call("GET", f"/system/function/{name}").status == 404
    assert provider.call("DELETE", "/system/functions", {"functionName": name}).status == 404


def test_auth_info_namespaces_and_metrics(provider: ProviderProcess, name: str) -> None:
    denied = provider.call("GET", "/system/functions", auth=False)
    assert denied.status == 401
    assert denied.headers["WWW-Authenticate"] == 'Basic realm="Restricted"'
    assert denied.text == "invalid credentials"
    assert provider.call("GET", "/system/namespaces", auth=False).status == 401
    assert get(f"{provider.url}/healthz").status == 200

    info = provider.call("GET", "/system/info").json()
    assert info["provider"] == "pyfaasd"
    assert info["orchestration"] == "docker"
    assert set(info["version"]) >= {"sha", "release"}

    assert provider.call("GET", "/system/namespaces").json()[0] == "openfaas-fn"
    ns = f"{name}-ns"
    body = {"name": ns, "labels": {"openfaas": "1"}, "annotations": {"openfaas": "1"}}
    assert provider.call("POST", "/system/namespace/", body).status == 201
    assert provider.call("POST", "/system/namespace/", body).status == 409
    assert ns in provider.call("GET", "/system/namespaces").json()
    assert provider.call("GET", f"/system/namespace/{ns}").json() == body
    deploy(provider, name, namespace=ns)
    assert provider.hosts(name, ns)
    assert provider.hosts(name) == []
    assert [f["name"] for f in provider.call("GET", f"/system/functions?namespace={ns}").json()] == [name]
    assert provider.call("DELETE", f"/system/namespace/{ns}", {"name": ns}).status == 409  # still has a function
    provider.call("DELETE", "/system/functions", {"functionName": name, "namespace": ns})
    assert provider.call("DELETE", f"/system/namespace/{ns}", {"name": ns}).status == 202
    assert provider.call("GET", f"/system/namespace/{ns}").status == 404

    metrics = get(f"{provider.url}/metrics").text
    assert 'provider_http_requests_total{code="200",method="GET",path="/system/functions"}' in metrics
    assert "provider_http_request_duration_seconds_bucket" in metrics
    assert 'path="/system/namespace"' in metrics


BAD_DEPLOYS = [
    pytest.param(b"{not json", "not valid JSON", id="malformed-json"),
    pytest.param(b"[]", "JSON object", id="not-an-object"),
    pytest.param(b"", "required", id="empty-body"),
    pytest.param({"image": HELLO}, "service is required", id="missing-service"),
    pytest.param({"service": "NAME"}, "image is required", id="missing-image"),
    pytest.param({"service": "Upper", "image": HELLO}, "service 'Upper' is not a valid name", id="uppercase-name"),
    pytest.param({"service": "a..b", "image": HELLO}, "not a valid name", id="dots-name"),
    pytest.param({"service": "x" * 64, "image": HELLO}, "longer than 63", id="long-name"),
    pytest.param(
        {"service": "NAME", "image": HELLO, "namespace": "nope"}, "namespace nope does not exist", id="unknown-ns"
    ),
    pytest.param({"service": "NAME", "image": HELLO, "limits": {"memory": "lots"}}, "limits.memory", id="bad-memory"),
    pytest.param({"service": "NAME", "image": HELLO, "limits": {"memory": "0"}}, "must be more than 0", id="no-memory"),
    # Raised to Docker's 6 MiB minimum, which a Python runtime does not start in: the OOM kill is named.
    pytest.param(
        {"service": "NAME", "image": HELLO, "limits": {"memory": "1Ki"}}, "more memory than its limit", id="tiny-memory"
    ),
    pytest.param({"service": "NAME", "image": HELLO, "limits": {"cpu": "64"}}, "limits.cpu", id="too-many-cpus"),
    pytest.param({"service": "NAME", "image": HELLO, "envVars": {"A": 1}}, "envVars", id="non-string-env"),
    pytest.param({"service": "NAME", "image": HELLO, "secrets": ["missing-one"]}, "missing-one", id="missing-secret"),
    pytest.param(
        {"service": "NAME", "image": "pyfaasd/does-not-exist:1"}, "pyfaasd/does-not-exist:1", id="missing-image"
    ),
    pytest.param(
        {"service": "NAME", "image": HELLO, "labels": {"com.pyfaasd.function": "x"}}, "reserved", id="reserved-label"
    ),
    pytest.param(
        {"service": "NAME", "image": HELLO, "labels": {"com.openfaas.scale.min": "500"}}, "scale.min", id="absurd-min"
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_DEPLOYS)
def test_bad_deploys_are_4xx_naming_the_problem_and_leave_nothing(
    provider: ProviderProcess, name: str, body: Any, message: str
) -> None:
    before = {c["ID"] for c in provider.containers()}
    raw = json.dumps(body).replace('"NAME"', json.dumps(name)).encode() if isinstance(body, dict) else body
    reply = provider.call("POST", "/system/functions", raw=raw)
    assert 400 <= reply.status < 500, (reply.status, reply.text)
    assert message in reply.text, reply.text
    assert {c["ID"] for c in provider.containers()} == before
    assert provider.hosts(name) == []


def test_a_function_that_cannot_start_is_refused_and_removed(provider: ProviderProcess, name: str) -> None:
    reply = provider.call(
        "POST", "/system/functions", {"service": name, "image": HELLO, "envVars": {"mode": "nonsense"}}
    )
    assert reply.status == 422, reply.text
    assert "did not become ready" in reply.text
    assert "exited" in reply.text
    assert of(provider, name) == []
    assert provider.call("GET", f"/system/function/{name}").status == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"replicas": -1}, "between 0 and", id="negative"),
        pytest.param({"replicas": 100000}, "between 0 and", id="absurd"),
        pytest.param({"replicas": "2"}, "whole number", id="string"),
        pytest.param({"replicas": 1, "namespace": "nope"}, "namespace nope", id="unknown-ns"),
    ],
)
def test_bad_scale_requests(provider: ProviderProcess, name: str, body: dict[str, Any], message: str) -> None:
    deploy(provider, name)
    reply = provider.call("POST", f"/system/scale-function/{name}", {"serviceName": name, **body})
    assert reply.status == 400, reply.text
    assert message in reply.text
    assert len(of(provider, name, running_only=True)) == 1
    missing = provider.call("POST", f"/system/scale-function/{name}x", {"serviceName": f"{name}x", "replicas": 1})
    assert missing.status == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"name": "a/b", "value": "v"}, "'/'", id="slash"),
        pytest.param({"name": "a..b", "value": "v"}, "'..'", id="dotdot"),
        pytest.param({"name": "Upper", "value": "v"}, "not a valid name", id="uppercase"),
        pytest.param({"name": "ok", "value": ""}, "value or rawValue", id="no-value"),
        pytest.param({"name": "ok", "rawValue": "!!"}, "base64", id="bad-base64"),
    ],
)
def test_bad_secrets(provider: ProviderProcess, body: dict[str, Any], message: str) -> None:
    reply = provider.call("POST", "/system/secrets", body)
    assert reply.status == 400, reply.text
    assert message in reply.text
