"""`pyfaasd deploy PATH` and code functions of a stack file, against the real provider app over fakes."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpServer

from provider.code_functions import ANNOTATION_CODE, LABEL_RUNTIME, LABEL_RUNTIME_MODE
from pyfaasd import stack
from servicekit.auth import Credentials
from tests.unit.provider.fakes import World

RUNTIME = "pyfaasd/runtime-python:latest"
HANDLER = "def handle(event, context):\n    return 'hi'\n"


class Target:
    def __init__(self, world: World, url: str, password_file: Path) -> None:
        self.world = world
        self.url = url
        self.password_file = password_file

    async def deploy_path(self, path: Path, *extra: str, **kwargs: Any) -> tuple[int, list[str], list[str]]:
        out: list[str] = []
        err: list[str] = []
        options: dict[str, Any] = {
            "name": "hello",
            "runtime": "python3.11",
            "namespace": "",
            "env": None,
            "secrets": None,
            "labels": None,
            "annotations": None,
        }
        options.update(kwargs)
        code = await asyncio.to_thread(
            stack.deploy_path_command,
            path=path,
            gateway=self.url,
            username="admin",
            password_file=self.password_file,
            state_dir=self.password_file.parent,
            environ={},
            out=out.append,
            err=err.append,
            **options,
        )
        return code, out, err

    def spec(self, name: str) -> Any:
        return self.world.orchestrator.get("openfaas-fn", name).spec


@pytest.fixture
async def target(tmp_path: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[Target]:
    world = World(tmp_path / "state")
    world.runtime.images[RUNTIME] = "sha256:rt"
    world.runtime.image_labels[RUNTIME] = {LABEL_RUNTIME: "python3.11", LABEL_RUNTIME_MODE: "python"}
    await world.start()
    app = world.app(Credentials("admin", "pw"))
    server = await aiohttp_server(app)
    password = tmp_path / "password"
    password.write_text("pw\n")
    yield Target(world, str(server.make_url("")).rstrip("/"), password)
    await world.core.close()


async def test_a_handler_file_deploys_onto_the_runtime_and_prints_the_url(target: Target, tmp_path: Path) -> None:
    handler = tmp_path / "handler.py"
    handler.write_text(HANDLER)
    code, out, err = await target.deploy_path(handler, env=["GREETING=hi"], labels=["team=a"])
    assert (code, err) == (0, [])
    assert out[-1] == f"URL: {target.url}/function/hello"
    spec = target.spec("hello")
    assert spec.image == RUNTIME
    assert spec.annotations[ANNOTATION_CODE].startswith("sha256:")
    assert (spec.env_vars, spec.labels) == ({"GREETING": "hi"}, {"team": "a"})
    [container] = target.world.runtime.of("hello")
    assert any(b.endswith(":/home/app/function:ro") for b in container.binds)


async def test_the_same_code_again_rolls_nothing_and_changed_code_rolls(target: Target, tmp_path: Path) -> None:
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text(HANDLER)
    assert (await target.deploy_path(folder))[0] == 0
    first = {c.id for c in target.world.runtime.of("hello")}
    assert (await target.deploy_path(folder))[0] == 0
    assert {c.id for c in target.world.runtime.of("hello")} == first
    (folder / "handler.py").write_text(HANDLER + "# v2\n")
    assert (await target.deploy_path(folder))[0] == 0
    assert {c.id for c in target.world.runtime.of("hello", running=True)} != first


async def test_a_stack_written_for_the_python3_http_template_deploys_as_code(target: Target, tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "handler.py").write_text(HANDLER)
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(
        textwrap.dedent(
            """
            version: 1.0
            provider: {name: openfaas, gateway: http://127.0.0.1:8080}
            functions:
              hello:
                lang: python3-http
                handler: ./hello
                image: registry.example/hello:latest
                environment: {write_timeout: 10s}
            """
        )
    )
    out: list[str] = []
    code = await asyncio.to_thread(
        stack.deploy_command,
        stack_file=stack_file,
        filters=None,
        gateway=target.url,
        username="admin",
        password_file=target.password_file,
        state_dir=tmp_path,
        env={},
        out=out.append,
        err=out.append,
    )
    assert code == 0, out
    spec = target.spec("hello")
    assert spec.image == RUNTIME  # no build, no registry: the runtime's image
    assert ANNOTATION_CODE in spec.annotations
    assert spec.env_vars == {"write_timeout": "10s"}
    assert not spec.env_process


async def test_an_unknown_runtime_names_the_ones_there_are(target: Target, tmp_path: Path) -> None:
    handler = tmp_path / "handler.py"
    handler.write_text(HANDLER)
    code, _, err = await target.deploy_path(handler, runtime="ruby3")
    assert code == 1
    assert err == ["hello: no runtime 'ruby3' on this gateway (it has: python3.11)"]


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "message"),
    [
        ("missing.py", {}, 1, "missing.py: no such file or directory"),
        ("notes.txt", {}, 1, "not a .py file"),
        ("handler.py", {"env": ["NOEQUALS"]}, 2, "--env 'NOEQUALS': expected KEY=VALUE"),
    ],
    ids=["missing", "not-code", "bad-env"],
)
async def test_what_cannot_be_deployed_is_named(
    target: Target, tmp_path: Path, path: str, kwargs: dict[str, Any], status: int, message: str
) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "handler.py").write_text(HANDLER)
    code, _, err = await target.deploy_path(tmp_path / path, **kwargs)
    assert code == status
    assert message in "\n".join(err)
    assert target.world.runtime.of("hello") == []


async def test_code_and_runtime_listings_removal_and_prune(target: Target, tmp_path: Path) -> None:
    from pyfaasd.code_commands import code_ls, code_prune, code_rm, runtime_ls
    from pyfaasd.gateway_client import Target as GatewayTarget
    from servicekit.auth import Credentials as Creds

    handler = tmp_path / "handler.py"
    handler.write_text(HANDLER)
    assert (await target.deploy_path(handler))[0] == 0
    digest = target.spec("hello").annotations[ANNOTATION_CODE]
    gateway = GatewayTarget(target.url, Creds("admin", "pw"))
    out: list[str] = []
    err: list[str] = []

    assert await asyncio.to_thread(code_ls, gateway, out.append, err.append) == 0
    assert out[0].split() == ["DIGEST", "SIZE", "FILES", "CREATED", "FUNCTIONS"]
    assert out[1].split()[0] == digest
    assert out[1].split()[-1] == "hello.openfaas-fn"

    assert await asyncio.to_thread(code_rm, gateway, [digest], out.append, err.append) == 1
    assert "409" in err[-1]
    assert "hello.openfaas-fn" in err[-1]

    out.clear()
    assert await asyncio.to_thread(code_prune, gateway, out.append, err.append) == 0
    assert out == ["Removed 0 unused dependency sets."]

    out.clear()
    assert await asyncio.to_thread(runtime_ls, gateway, out.append, err.append) == 0
    assert [line.split() for line in out] == [["NAME", "IMAGE", "MODE"], ["python3.11", RUNTIME, "python"]]

    wrong = GatewayTarget(target.url, Creds("admin", "wrong"))
    assert await asyncio.to_thread(runtime_ls, wrong, out.append, err.append) == 1
    assert "401" in err[-1]


async def test_a_folder_with_requirements_shows_pips_output_before_the_deploy(target: Target, tmp_path: Path) -> None:
    def pip(config: dict[str, Any]) -> tuple[int, list[str]]:
        out = next(b.split(":")[0] for b in config["HostConfig"]["Binds"] if ":/out:" in b)
        Path(out, "six.py").write_text("")
        return 0, ["Collecting six", "Successfully installed six-1.16.0"]

    target.world.runtime.one_shot = pip
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text(HANDLER)
    (folder / "requirements.txt").write_text("six\n")
    code, out, err = await target.deploy_path(folder)
    assert (code, err) == (0, [])
    assert out[1:4] == ["  pip: Collecting six", "  pip: Successfully installed six-1.16.0", "Requirements: installed."]
    assert out[-2:] == ["Deployed. 202 Accepted.", f"URL: {target.url}/function/hello"]

    target.world.runtime.one_shot = lambda config: (1, ["ERROR: No matching distribution found for nope"])
    (folder / "requirements.txt").write_text("nope\n")
    code, out, err = await target.deploy_path(folder, name="other")
    assert code == 1
    assert "No matching distribution found for nope" in err[-1]
    assert target.world.runtime.of("other") == []


@pytest.mark.parametrize("command", ["deploy", "dev"])
def test_volume_flags_become_volume_annotations(command: str) -> None:
    from pyfaasd import cli

    args = cli.build_parser().parse_args(
        [command, "x", "--name", "a", "--annotation", "k=v", "--volume", "data=/mnt/data:ro", "--volume", "auto=/a"]
    )
    assert cli._annotations(args) == ["k=v", "com.pyfaasd.volume.data=/mnt/data:ro", "com.pyfaasd.volume.auto=/a"]
