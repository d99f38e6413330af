"""Code functions over the provider's HTTP edge and the fakes: upload, deploy onto a runtime, refusals."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from provider.code_functions import ANNOTATION_CODE, LABEL_RUNTIME, LABEL_RUNTIME_MODE
from tests.unit.provider.fakes import AUTH, Client, World, until

HANDLER = b"def handle(event, context):\n    return 'hi'\n"
RUNTIME = "rt:1"


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
async def stack(stack: tuple[World, Client]) -> tuple[World, Client]:
    """The provider's API over a World with a python3.11 runtime image."""
    world, client = stack
    world.runtime.images[RUNTIME] = "sha256:rt1"
    world.runtime.image_labels[RUNTIME] = {LABEL_RUNTIME: "python3.11", LABEL_RUNTIME_MODE: "python"}
    world.runtime.image_labels["fn:1"] = {LABEL_RUNTIME: ""}  # a function image built on a runtime opts out
    return world, client


Upload = Callable[..., Awaitable[dict[str, Any]]]


async def upload(client: Client, data: bytes, filename: str = "handler.py", status: int = 201) -> dict[str, Any]:
    reply = await client.post(f"/system/code?filename={filename}", data=data, headers=AUTH)
    assert reply.status == status, await reply.text()
    body: dict[str, Any] = await reply.json()
    return body


async def deploy(client: Client, name: str, digest: str, image: str = RUNTIME, method: str = "POST") -> Any:
    spec = {"service": name, "image": image, "annotations": {ANNOTATION_CODE: digest}}
    return await client.request(method, "/system/functions", json=spec, headers=AUTH)


async def test_upload_answers_201_then_200_with_digest_size_and_files(stack: tuple[World, Client]) -> None:
    _, client = stack
    first = await upload(client, HANDLER)
    assert first["digest"].startswith("sha256:")
    assert (first["size"], first["files"]) == (len(HANDLER), ["handler.py"])
    assert await upload(client, HANDLER, status=200) == first


async def test_a_code_function_mounts_its_bundle_read_only_on_the_runtime(stack: tuple[World, Client]) -> None:
    world, client = stack
    digest = (await upload(client, HANDLER))["digest"]
    reply = await deploy(client, "hello", digest)
    assert reply.status == 202, await reply.text()
    [container] = world.runtime.of("hello")
    bundle = world.core.code.store.get(digest).path
    assert f"{bundle}:/home/app/function:ro" in container.binds
    assert not [b for b in container.binds if "/home/app/packages" in b]  # no requirements, no set
    listed = await (await client.get("/system/code", headers=AUTH)).json()
    assert [(b["digest"], b["functions"]) for b in listed] == [(digest, ["hello.openfaas-fn"])]


async def test_requirements_are_installed_once_and_mounted_for_every_function(stack: tuple[World, Client]) -> None:
    world, client = stack
    runs: list[dict[str, Any]] = []

    def pip(config: dict[str, Any]) -> tuple[int, list[str]]:
        runs.append(config)
        out = next(b.split(":")[0] for b in config["HostConfig"]["Binds"] if ":/out:" in b)
        Path(out, "six.py").write_text("")
        return 0, ["Successfully installed six"]

    world.runtime.one_shot = pip
    one = (await upload(client, zipped({"handler.py": HANDLER, "requirements.txt": b"six\n"})))["digest"]
    two = (await upload(client, zipped({"handler.py": HANDLER + b"\n", "requirements.txt": b"six\n"})))["digest"]
    assert (await deploy(client, "a", one)).status == 202
    assert (await deploy(client, "b", two)).status == 202
    assert len(runs) == 1
    assert runs[0]["Image"] == "sha256:rt1"  # pip of the runtime image, so wheels match its Python
    packages = {b for c in world.runtime.of("a") + world.runtime.of("b") for b in c.binds if "packages" in b}
    assert len(packages) == 1


async def test_a_failed_requirements_install_is_422_with_pips_error_and_leaves_nothing(
    stack: tuple[World, Client],
) -> None:
    world, client = stack
    world.runtime.one_shot = lambda config: (1, ["ERROR: No matching distribution found for nosuchpkg"])
    digest = (await upload(client, zipped({"handler.py": HANDLER, "requirements.txt": b"nosuchpkg\n"})))["digest"]
    reply = await deploy(client, "bad", digest)
    assert reply.status == 422
    assert "No matching distribution found for nosuchpkg" in await reply.text()
    assert world.runtime.of("bad") == []
    assert world.core.code.dependencies.keys() == []
    assert (await client.get("/system/function/bad", headers=AUTH)).status == 404


@pytest.mark.parametrize(
    ("annotation", "image", "status", "message"),
    [
        ("sha256:" + "0" * 64, RUNTIME, 400, "is not stored"),
        ("md5:abc", RUNTIME, 400, "annotation com.pyfaasd.code"),
        (None, "fn:1", 400, "fn:1 is not a runtime"),
    ],
    ids=["not-stored", "malformed", "not-a-runtime"],
)
async def test_bad_code_deploys_are_refused_naming_the_problem_and_leave_nothing(
    stack: tuple[World, Client], annotation: str | None, image: str, status: int, message: str
) -> None:
    world, client = stack
    digest = annotation or (await upload(client, HANDLER))["digest"]
    reply = await deploy(client, "bad", digest, image=image)
    assert reply.status == status
    assert message in await reply.text()
    assert world.runtime.of("bad") == []


async def test_a_new_digest_on_put_is_a_rolling_update(stack: tuple[World, Client]) -> None:
    world, client = stack
    old = (await upload(client, HANDLER))["digest"]
    new = (await upload(client, HANDLER + b"# v2\n"))["digest"]
    assert (await deploy(client, "fn", old)).status == 202
    [before] = world.runtime.of("fn")
    assert (await deploy(client, "fn", new, method="PUT")).status == 202
    await until(lambda: before.id not in {c.id for c in world.runtime.of("fn")}, what="the old replica to go")
    running = world.runtime.of("fn", running=True)
    bundle = world.core.code.store.get(new).path
    assert all(f"{bundle}:/home/app/function:ro" in c.binds for c in running)


async def test_a_bundle_in_use_cannot_be_removed_and_an_unused_one_can(stack: tuple[World, Client]) -> None:
    world, client = stack
    used = (await upload(client, HANDLER))["digest"]
    spare = (await upload(client, b"def run():\n    return 1\n"))["digest"]
    assert (await deploy(client, "user", used)).status == 202
    refused = await client.delete(f"/system/code/{used}", headers=AUTH)
    assert refused.status == 409
    assert "user.openfaas-fn" in await refused.text()
    assert (await client.delete(f"/system/code/{spare}", headers=AUTH)).status == 200
    assert (await client.delete(f"/system/code/{spare}", headers=AUTH)).status == 404
    assert (await client.delete("/system/code/nonsense", headers=AUTH)).status == 400
    assert world.core.code.store.exists(used)


async def test_an_upload_over_the_limit_is_413_and_stores_nothing(stack: tuple[World, Client]) -> None:
    world, client = stack
    limit = world.config.code_limits.max_bytes
    reply = await client.post("/system/code", data=io.BytesIO(b"#" * (limit + 1)), headers=AUTH)
    assert reply.status == 413
    assert "PYFAASD_CODE_MAX_BYTES" in await reply.text()
    assert world.core.code.store.list() == []


async def test_runtimes_lists_the_runtime_images_only(stack: tuple[World, Client]) -> None:
    _, client = stack
    reply = await client.get("/system/runtimes", headers=AUTH)
    assert await reply.json() == [{"name": "python3.11", "image": RUNTIME, "mode": "python"}]
    assert (await client.get("/system/runtimes")).status == 401


async def test_prune_removes_the_dependency_sets_no_function_uses(stack: tuple[World, Client]) -> None:
    world, client = stack

    def pip(config: dict[str, Any]) -> tuple[int, list[str]]:
        out = next(b.split(":")[0] for b in config["HostConfig"]["Binds"] if ":/out:" in b)
        Path(out, "pkg.py").write_text("")
        return 0, []

    world.runtime.one_shot = pip
    kept = (await upload(client, zipped({"handler.py": HANDLER, "requirements.txt": b"six\n"})))["digest"]
    gone = (await upload(client, zipped({"handler.py": HANDLER, "requirements.txt": b"attrs\n"})))["digest"]
    assert (await deploy(client, "keep", kept)).status == 202
    assert (await deploy(client, "drop", gone)).status == 202
    assert len(world.core.code.dependencies.keys()) == 2
    assert (await client.delete("/system/functions", json={"functionName": "drop"}, headers=AUTH)).status == 200

    reply = await client.post("/system/code/prune", headers=AUTH)
    assert reply.status == 200
    [removed] = (await reply.json())["removedDependencySets"]
    [left] = world.core.code.dependencies.keys()
    assert removed != left
    [container] = world.runtime.of("keep")
    assert any(b.startswith(str(world.config.deps_dir / left)) for b in container.binds)
    assert (await (await client.post("/system/code/prune", headers=AUTH)).json()) == {"removedDependencySets": []}


def dev_dir(tmp_path: Path, token: str = "t" * 40) -> Path:
    live = tmp_path / "live"
    live.mkdir(exist_ok=True)
    (live / "handler.py").write_bytes(HANDLER)
    (live / ".pyfaasd-dev").write_text(token + "\n")
    return live


async def dev_deploy(client: Client, name: str, directory: str, token: str, **extra: str) -> Any:
    annotations = {"com.pyfaasd.dev": directory, "com.pyfaasd.dev.token": token, **extra}
    spec = {"service": name, "image": RUNTIME, "annotations": annotations}
    return await client.post("/system/functions", json=spec, headers=AUTH)


async def test_a_dev_function_mounts_its_live_directory_when_the_token_proves_local_access(
    stack: tuple[World, Client], tmp_path: Path
) -> None:
    world, client = stack
    live = dev_dir(tmp_path)
    reply = await dev_deploy(client, "dev", str(live), "t" * 40)
    assert reply.status == 202, await reply.text()
    [container] = world.runtime.of("dev")
    assert f"{live}:/home/app/function:ro" in container.binds


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ("wrong-token", 403, "token does not match"),
        ("short-token", 403, "token does not match"),
        ("world-writable", 403, "writable by everyone"),
        ("token-symlink", 403, "token does not match"),
        ("token-other-owner", 403, "token does not match"),
        ("relative", 400, "not an absolute path"),
        ("missing", 403, "not a directory"),
        ("with-code", 400, "exclude each other"),
    ],
)
async def test_a_dev_directory_that_proves_nothing_is_refused(
    stack: tuple[World, Client], tmp_path: Path, change: str, status: int, message: str
) -> None:
    world, client = stack
    token = "t" * 40
    live = dev_dir(tmp_path, token)
    directory, extra = str(live), {}
    if change == "wrong-token":
        token = "u" * 40
    elif change == "short-token":
        dev_dir(tmp_path, "short")
        token = "short"
    elif change == "world-writable":
        live.chmod(0o777)
    elif change == "token-symlink":
        secret = tmp_path / "elsewhere"
        secret.write_text(token)
        (live / ".pyfaasd-dev").unlink()
        (live / ".pyfaasd-dev").symlink_to(secret)
    elif change == "token-other-owner":
        os.chown(live / ".pyfaasd-dev", 12345, 12345)
    elif change == "relative":
        directory = "live"
    elif change == "missing":
        directory = str(tmp_path / "nowhere")
    elif change == "with-code":
        extra = {"com.pyfaasd.code": (await upload(client, HANDLER))["digest"]}
    reply = await dev_deploy(client, "dev", directory, token, **extra)
    assert reply.status == status
    assert message in await reply.text()
    assert world.runtime.of("dev") == []


async def test_requirements_can_be_installed_ahead_with_pips_output_streamed(stack: tuple[World, Client]) -> None:
    world, client = stack

    def pip(config: dict[str, Any]) -> tuple[int, list[str]]:
        out = next(b.split(":")[0] for b in config["HostConfig"]["Binds"] if ":/out:" in b)
        Path(out, "six.py").write_text("")
        return 0, ["Collecting six", "Successfully installed six-1.16.0"]

    world.runtime.one_shot = pip
    digest = (await upload(client, zipped({"handler.py": HANDLER, "requirements.txt": b"six\n"})))["digest"]
    url = f"/system/code/{digest}/dependencies"

    async def install(image: str = RUNTIME) -> list[dict[str, Any]]:
        reply = await client.post(url, json={"image": image}, headers=AUTH)
        assert reply.status == 200, await reply.text()
        assert reply.headers["Content-Type"] == "application/x-ndjson"
        return [json.loads(line) for line in (await reply.text()).splitlines()]

    assert await install() == [
        {"line": "Collecting six"},
        {"line": "Successfully installed six-1.16.0"},
        {"status": "installed"},
    ]
    assert await install() == [{"status": "cached"}]
    no_requirements = (await upload(client, HANDLER))["digest"]
    reply = await client.post(f"/system/code/{no_requirements}/dependencies", json={"image": RUNTIME}, headers=AUTH)
    # Compact, as every JSON answer of the provider (servicekit/json_text.py, like Go's json.Marshal).
    assert (await reply.text()).splitlines() == ['{"status":"none"}']

    world.runtime.one_shot = lambda config: (1, ["ERROR: No matching distribution found for nope"])
    failing = (await upload(client, zipped({"handler.py": HANDLER, "requirements.txt": b"nope\n"})))["digest"]
    reply = await client.post(f"/system/code/{failing}/dependencies", json={"image": RUNTIME}, headers=AUTH)
    [*_, last] = [json.loads(line) for line in (await reply.text()).splitlines()]
    assert "No matching distribution found for nope" in last["error"]
    assert len(world.core.code.dependencies.keys()) == 1

    refused = await client.post(url, json={"image": "fn:1"}, headers=AUTH)
    assert (refused.status, "not a runtime" in await refused.text()) == (400, True)
    missing = await client.post(
        "/system/code/sha256:" + "1" * 64 + "/dependencies", json={"image": RUNTIME}, headers=AUTH
    )
    assert missing.status == 404
