"""Code functions against the real engine: bundles on the python3.11 runtime, requirements from local wheels."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.code_support import DEP, make_wheel
from tests.docker_support import require_image
from tests.integration.provider.conftest import HELLO
from tests.provider_harness import ProviderProcess, Reply, http

pytestmark = pytest.mark.docker

RUNTIME = "pyfaasd/runtime-python:latest"


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def tarred(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def provider(provider_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderProcess]:
    require_image(RUNTIME)
    wheels = tmp_path_factory.mktemp("wheels")
    make_wheel(wheels)
    process = ProviderProcess(
        state_dir=tmp_path_factory.mktemp("provider") / "state", extra_env={"PYFAASD_PIP_FIND_LINKS": str(wheels)}
    )
    try:
        process.start()
        yield process
    finally:
        process.cleanup()


def upload(provider: ProviderProcess, data: bytes, filename: str = "handler.py") -> str:
    reply = provider.call("POST", f"/system/code?filename={filename}", raw=data)
    assert reply.status in (200, 201), reply.text
    digest: str = reply.json()["digest"]
    return digest


def deploy(provider: ProviderProcess, name: str, digest: str, method: str = "POST", **fields: Any) -> Reply:
    spec = {"service": name, "image": RUNTIME, "annotations": {"com.pyfaasd.code": digest}, **fields}
    return provider.call(method, "/system/functions", spec)


def invoke(provider: ProviderProcess, name: str, body: bytes = b"") -> Reply:
    [ip, *_] = provider.hosts(name)
    return http("POST", f"http://{ip}:8080/", body, timeout=10)


def dependency_dirs(provider: ProviderProcess) -> list[str]:
    """Everything under <state>/deps, temporary directories of installs included."""
    deps = provider.state_dir / "deps"
    return sorted(p.name for p in deps.iterdir()) if deps.exists() else []


def of(provider: ProviderProcess, name: str) -> list[dict[str, str]]:
    return [c for c in provider.containers() if f"com.pyfaasd.function={name}" in c["Labels"]]


def test_runtimes_list_the_python_runtime(provider: ProviderProcess) -> None:
    runtimes = provider.call("GET", "/system/runtimes").json()
    assert {"name": "python3.11", "image": RUNTIME, "mode": "python"} in runtimes
    assert all(r["image"] != HELLO for r in runtimes)  # a function image built on the runtime is no runtime


def test_a_handler_file_runs_on_the_runtime_read_only(provider: ProviderProcess, name: str) -> None:
    source = (
        "def handle(event, context):\n"
        "    try:\n"
        "        open('/home/app/function/x', 'w')\n"
        "        wrote = 'wrote'\n"
        "    except OSError:\n"
        "        wrote = 'read-only'\n"
        "    return f'code {event.body.decode()} {wrote}'\n"
    )
    digest = upload(provider, source.encode())
    reply = deploy(provider, name, digest)
    assert reply.status == 202, (reply.text, provider.log_tail())
    answer = invoke(provider, name, b"hi")
    assert (answer.status, answer.text) == (200, "code hi read-only")


def test_requirements_come_from_local_wheels_once_for_every_function_that_needs_them(
    provider: ProviderProcess, name: str
) -> None:
    handler = f"from {DEP} import VALUE\n\ndef run():\n    return VALUE\n"
    one = upload(provider, zipped({"handler.py": handler, "requirements.txt": "pyfaasd-demo-dep==1.0\n"}))
    two = upload(provider, tarred({"fn/handler.py": handler + "\n", "fn/requirements.txt": "pyfaasd-demo-dep==1.0\n"}))
    for suffix, digest in (("a", one), ("b", two)):
        reply = deploy(provider, f"{name}{suffix}", digest)
        assert reply.status == 202, (reply.text, provider.log_tail())
        answer = invoke(provider, f"{name}{suffix}")
        assert (answer.status, answer.json()) == (200, "from a wheel")
    assert len(dependency_dirs(provider)) == 1  # same runtime, same requirements: one install


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        ({"handler.py": "import not_installed_anywhere\ndef run():\n    pass\n"}, 422, "not_installed_anywhere"),
        (
            {"handler.py": "def run():\n    pass\n", "requirements.txt": "no-such-package-pyfaasd\n"},
            422,
            "no-such-package-pyfaasd",
        ),
    ],
    ids=["missing-module", "pip-fails"],
)
def test_a_code_function_that_cannot_run_is_refused_at_deploy_and_leaves_nothing(
    provider: ProviderProcess, name: str, files: dict[str, str], status: int, message: str
) -> None:
    before = dependency_dirs(provider)
    digest = upload(provider, zipped(files))
    reply = deploy(provider, name, digest)
    assert reply.status == status, reply.text
    assert message in reply.text
    assert of(provider, name) == []
    assert provider.call("GET", f"/system/function/{name}").status == 404
    assert dependency_dirs(provider) == before  # no dependency set and no leftover of the failed install
    installers = [c for c in provider.containers() if "com.pyfaasd.installer" in c["Labels"]]
    assert installers == []


@pytest.mark.parametrize(
    ("digest", "image", "message"),
    [("sha256:" + "0" * 64, RUNTIME, "is not stored"), (None, HELLO, "is not a runtime")],
    ids=["not-stored", "not-a-runtime"],
)
def test_bad_code_deploys_are_400_naming_the_problem(
    provider: ProviderProcess, name: str, digest: str | None, image: str, message: str
) -> None:
    digest = digest or upload(provider, b"def run():\n    return 1\n")
    spec = {"service": name, "image": image, "annotations": {"com.pyfaasd.code": digest}}
    reply = provider.call("POST", "/system/functions", spec)
    assert reply.status == 400
    assert message in reply.text
    assert of(provider, name) == []


def test_a_code_update_under_load_drops_no_request(provider: ProviderProcess, name: str) -> None:
    v1 = upload(provider, b"def handle(event, context):\n    return 'v1'\n")
    v2 = upload(provider, b"def handle(event, context):\n    return 'v2'\n")
    assert deploy(provider, name, v1, labels={"com.openfaas.scale.min": "2"}).status == 202
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            ips = provider.hosts(name)
            if not ips:
                results.append((0, "no replica in the hosts file"))
                continue
            try:
                reply = http("GET", f"http://{ips[len(results) % len(ips)]}:8080/", timeout=5)
                results.append((reply.status, reply.text))
            except OSError as e:
                results.append((0, str(e)))
            time.sleep(0.005)

    workers = [threading.Thread(target=load) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.3)
        assert deploy(provider, name, v2, method="PUT", labels={"com.openfaas.scale.min": "2"}).status == 202
        time.sleep(1.5)  # the old replicas leave the hosts file, then stop
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
    failed = [r for r in results if r[0] != 200]
    assert failed == []
    assert {text for _, text in results} <= {"v1", "v2"}
    assert results[-1][1] == "v2"
    assert len(results) > 50


def test_a_bundle_in_use_is_kept_and_an_unused_one_removed(provider: ProviderProcess, name: str) -> None:
    used = upload(provider, b"def run():\n    return 'used'\n")
    spare = upload(provider, b"def run():\n    return 'spare'\n")
    assert deploy(provider, name, used).status == 202
    refused = provider.call("DELETE", f"/system/code/{used}")
    assert refused.status == 409
    assert f"{name}.openfaas-fn" in refused.text
    listed = {b["digest"]: b for b in provider.call("GET", "/system/code").json()}
    assert listed[used]["functions"] == [f"{name}.openfaas-fn"]
    assert provider.call("DELETE", f"/system/code/{spare}").status == 200
    assert spare not in {b["digest"] for b in provider.call("GET", "/system/code").json()}
    assert json.loads(invoke(provider, name).text) == "used"


def test_a_runtime_built_from_a_dockerfile_joins_the_library_and_runs_code(
    provider: ProviderProcess, name: str, tmp_path: Path
) -> None:
    runtime = f"pytest-{name}"
    context = tmp_path / "runtime"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {RUNTIME}\nENV GREETING=from-the-runtime\n")
    tag = f"pyfaasd/runtime-{runtime}:latest"
    try:
        built = subprocess.run(
            [sys.executable, "-m", "pyfaasd.cli", "runtime", "build", runtime, str(context)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert built.returncode == 0, built.stderr
        assert {"name": runtime, "image": tag, "mode": "python"} in provider.call("GET", "/system/runtimes").json()
        digest = upload(provider, b"import os\n\ndef run():\n    return os.environ['GREETING']\n")
        reply = provider.call(
            "POST", "/system/functions", {"service": name, "image": tag, "annotations": {"com.pyfaasd.code": digest}}
        )
        assert reply.status == 202, reply.text
        assert invoke(provider, name).json() == "from-the-runtime"
    finally:
        provider.call("DELETE", "/system/functions", {"functionName": name})
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


def test_requirements_installed_ahead_stream_pips_output(provider: ProviderProcess) -> None:
    digest = upload(
        provider, zipped({"handler.py": "def run():\n    pass\n", "requirements.txt": "pyfaasd-demo-dep\n"})
    )
    reply = provider.call("POST", f"/system/code/{digest}/dependencies", {"image": RUNTIME})
    assert reply.status == 200
    items = [json.loads(line) for line in reply.text.splitlines()]
    assert any("Successfully installed pyfaasd-demo-dep-1.0" in item.get("line", "") for item in items), items
    assert items[-1] == {"status": "installed"}
    again = provider.call("POST", f"/system/code/{digest}/dependencies", {"image": RUNTIME})
    assert again.text.splitlines() == ['{"status":"cached"}']
