"""Pulls through registries.yaml's mirrors, pull policy per function, /system/images over the fakes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from provider.errors import ImageUnavailableError, InvalidRequestError
from provider.images import ImagePuller
from provider.registries import Reference, RegistriesConfig, RegistriesConfigError
from tests.unit.provider.fakes import AUTH, Client, FakeRuntime, World, until


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpine", Reference("docker.io", "library/alpine", "latest")),
        ("team/app:1.2", Reference("docker.io", "team/app", "1.2")),
        ("ghcr.io/org/app", Reference("ghcr.io", "org/app", "latest")),
        ("127.0.0.1:5000/fn/echo:v1", Reference("127.0.0.1:5000", "fn/echo", "v1")),
        ("localhost/x@sha256:" + "a" * 64, Reference("localhost", "x", "", "sha256:" + "a" * 64)),
    ],
)
def test_references_are_normalised_as_docker_does(text: str, expected: Reference) -> None:
    assert Reference.parse(text) == expected


@pytest.mark.parametrize("text", ["", "UPPER/case", "a b", "x:bad tag"])
def test_a_bad_reference_is_400(text: str) -> None:
    with pytest.raises(InvalidRequestError):
        Reference.parse(text)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registries.yaml"
    path.write_text(text)
    return path


def test_sources_are_the_mirrors_in_order_then_the_registry(tmp_path: Path) -> None:
    config = RegistriesConfig.load(
        write(
            tmp_path,
            'mirrors:\n  docker.io: ["http://127.0.0.1:5001", "https://m.example:443"]\n'
            '  "*": ["http://127.0.0.1:5009"]\n',
        )
    )
    hub = config.sources(Reference.parse("alpine"), "alpine")
    assert [(s.label, s.pull_ref) for s in hub] == [
        ("http://127.0.0.1:5001", "127.0.0.1:5001/library/alpine:latest"),
        ("https://m.example:443", "m.example:443/library/alpine:latest"),
        ("docker.io", "alpine"),
    ]
    other = config.sources(Reference.parse("ghcr.io/o/a:1"), "ghcr.io/o/a:1")
    assert [s.pull_ref for s in other] == ["127.0.0.1:5009/o/a:1", "ghcr.io/o/a:1"]
    closed = RegistriesConfig.load(write(tmp_path, 'mirrors: {"*": ["http://127.0.0.1:5009"]}\nfallback: false\n'))
    assert [s.pull_ref for s in closed.sources(Reference.parse("alpine"), "alpine")] == [
        "127.0.0.1:5009/library/alpine:latest"
    ]
    assert RegistriesConfig.load(tmp_path / "missing.yaml") == RegistriesConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mirrors: {docker.io: [ftp://x]}", "not an http:// or https://"),
        ("mirrors: {docker.io: [http://x:5000/v2]}", "without a path"),
        ("mirrors: {docker.io: http://x}", "must be a list"),
        ("fallback: maybe", "true or false"),
        ("mirrorz: {}", "unknown field 'mirrorz'"),
        ("[1, 2]", "must be a mapping"),
    ],
)
def test_a_broken_registries_file_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RegistriesConfigError, match=message):
        RegistriesConfig.load(write(tmp_path, text))


async def test_a_pull_goes_through_the_first_mirror_that_has_it_and_keeps_the_users_name(tmp_path: Path) -> None:
    runtime = FakeRuntime("pft0")
    runtime.pullable = {"127.0.0.1:5002/team/app:1"}
    config = 'mirrors: {docker.io: ["http://127.0.0.1:5001", "http://127.0.0.1:5002"]}\n'
    puller = ImagePuller(runtime, write(tmp_path, config), None)
    progress: list[dict[str, object]] = []
    result = await puller.pull("team/app:1", progress.append)
    assert runtime.pulls == ["127.0.0.1:5001/team/app:1", "127.0.0.1:5002/team/app:1"]
    assert (result.image, result.source) == ("team/app:1", "http://127.0.0.1:5002")
    assert "team/app:1" in runtime.images
    assert "127.0.0.1:5002/team/app:1" not in runtime.images  # the mirror's name is not left behind
    assert progress == [{"status": "Downloading", "layer": "layer1", "current": 5, "total": 10}]


async def test_no_fallback_when_forbidden_and_the_error_names_every_source(tmp_path: Path) -> None:
    runtime = FakeRuntime("pft0")
    runtime.pullable = {"team/app:1"}  # the registry has it, but it may not be asked
    puller = ImagePuller(runtime, write(tmp_path, 'mirrors: {"*": ["http://127.0.0.1:5001"]}\nfallback: false\n'), None)
    with pytest.raises(ImageUnavailableError) as error:
        await puller.pull("team/app:1")
    assert "image team/app:1 could not be pulled; tried http://127.0.0.1:5001: manifest for" in str(error.value)
    assert runtime.pulls == ["127.0.0.1:5001/team/app:1"]
    write(tmp_path, 'mirrors: {"*": ["http://127.0.0.1:5001"]}\nfallback: true\n')
    assert puller.reload()
    assert (await puller.pull("team/app:1")).source == "docker.io"
    write(tmp_path, "mirrors: [")
    assert not puller.reload()  # a broken file is refused and the last good one kept
    assert puller.config.fallback


async def test_the_pull_policy_label_of_a_function(stack: tuple[World, Client]) -> None:
    world, client = stack
    world.runtime.pullable = {"fn:1"}
    spec = {"service": "a", "image": "fn:1", "labels": {"com.pyfaasd.pull-policy": "always"}}
    assert (await client.post("/system/functions", json=spec, headers=AUTH)).status == 202
    assert world.runtime.pulls == ["fn:1"]  # pulled although present
    spec = {"service": "b", "image": "fn:1", "labels": {"com.pyfaasd.pull-policy": "sometimes"}}
    reply = await client.post("/system/functions", json=spec, headers=AUTH)
    assert (reply.status, "com.pyfaasd.pull-policy" in await reply.text()) == (400, True)
    spec = {"service": "c", "image": "gone:1", "labels": {"com.pyfaasd.pull-policy": "never"}}
    reply = await client.post("/system/functions", json=spec, headers=AUTH)
    assert (reply.status, "pull policy is never" in await reply.text()) == (400, True)


async def test_pull_api_streams_progress_then_the_result(stack: tuple[World, Client]) -> None:
    world, client = stack
    world.runtime.pullable = {"team/app:1"}
    reply = await client.post("/system/images/pull", json={"image": "team/app:1"}, headers=AUTH)
    assert (reply.status, reply.headers["Content-Type"]) == (200, "application/x-ndjson")
    lines = [json.loads(line) for line in (await reply.text()).splitlines()]
    assert lines[0] == {"status": "Downloading", "layer": "layer1", "current": 5, "total": 10}
    assert (lines[-1]["image"], lines[-1]["source"]) == ("team/app:1", "docker.io")
    missing = await client.post("/system/images/pull", json={"image": "nowhere/app:1"}, headers=AUTH)
    assert (missing.status, "tried docker.io" in await missing.text()) == (400, True)
    assert (await client.post("/system/images/pull", json={"image": "BAD"}, headers=AUTH)).status == 400


async def test_refresh_rolls_exactly_the_functions_whose_image_changed(stack: tuple[World, Client]) -> None:
    world, client = stack
    world.runtime.pullable = {"fn:1", "fn:2"}
    world.runtime.pullable_ids = {"fn:1": "sha256:fn1-a", "fn:2": "sha256:fn2-a"}  # the registry as deployed
    for name, image in (("one", "fn:1"), ("two", "fn:2")):
        assert (await client.post("/system/functions", json={"service": name, "image": image}, headers=AUTH)).ok
    before = {c.id for c in world.runtime.of("one")}
    world.runtime.pullable_ids["fn:2"] = "sha256:fn2-b"  # fn:2 was pushed anew upstream
    reply = await client.post("/system/images/refresh", json={}, headers=AUTH)
    assert await reply.json() == {"rolled": ["two.openfaas-fn"], "unchanged": ["one.openfaas-fn"], "failed": {}}
    await until(lambda: [c.image_id for c in world.runtime.of("two")] == ["sha256:fn2-b"], what="the roll")
    assert {c.id for c in world.runtime.of("one")} == before
    only = await client.post("/system/images/refresh", json={"functions": ["one"]}, headers=AUTH)
    assert (await only.json())["unchanged"] == ["one.openfaas-fn"]
    ghost = await client.post("/system/images/refresh", json={"functions": ["ghost"]}, headers=AUTH)
    assert ghost.status == 404


Make = Callable[..., Awaitable[Any]]
