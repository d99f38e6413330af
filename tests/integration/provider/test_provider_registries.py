"""Pulls through mirrors against real registries on loopback: an origin, a pull-through cache in front of it,
and one that requires htpasswd credentials (Debian's docker-registry), driven through the real provider."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import free_port
from tests.integration.provider.conftest import ECHO, HELLO
from tests.provider_harness import ProviderProcess, Reply
from tests.registry_support import Registry, htpasswd_file, push, remove_images_of, remove_local

pytestmark = pytest.mark.docker


@dataclass
class World:
    provider: ProviderProcess
    origin: Registry
    cache: Registry
    private: Registry
    locked: Registry  # requires credentials the provider does not have
    registries_yaml: Path

    def mirrors(self, text: str) -> None:
        """Write registries.yaml and have the provider read it again (SIGHUP), as an operator would."""
        marker = "registries_reloaded"
        count = self.provider.log_path.read_text().count(marker)
        self.registries_yaml.write_text(text)
        assert self.provider.proc is not None
        os.kill(self.provider.proc.pid, signal.SIGHUP)
        for _ in range(200):
            if self.provider.log_path.read_text().count(marker) > count:
                return
            time.sleep(0.02)
        raise AssertionError("the provider did not read registries.yaml again")


@pytest.fixture(scope="module")
def world(provider_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("registries")
    origin = Registry(root / "origin").start()
    cache = Registry(root / "cache", proxy_of=origin.url).start()
    passwords = htpasswd_file(root / "htpasswd", "puller", "s3cret")
    private = Registry(root / "private", htpasswd=passwords).start()
    locked = Registry(root / "locked", htpasswd=passwords).start()
    docker_config = root / "config.json"
    token = base64.b64encode(b"puller:s3cret").decode()
    docker_config.write_text(json.dumps({"auths": {private.host: {"auth": token}}}))
    registries_yaml = root / "registries.yaml"
    registries_yaml.write_text("mirrors: {}\n")
    provider = ProviderProcess(
        state_dir=root / "state",
        extra_env={"PYFAASD_REGISTRIES": str(registries_yaml), "PYFAASD_DOCKER_CONFIG": str(docker_config)},
    )
    login = root / "docker-cli"  # the pushing docker CLI's own config, not the machine's
    login.mkdir()
    (login / "config.json").write_text(
        json.dumps({"auths": {private.host: {"auth": token}, locked.host: {"auth": token}}})
    )
    try:
        push(ECHO, f"{origin.host}/pft/echo:v1")
        push(HELLO, f"{origin.host}/pft/hello:v1")
        push(ECHO, f"{private.host}/pft/secret:v1", config=login)
        push(ECHO, f"{locked.host}/pft/secret:v1", config=login)
        provider.start()
        yield World(provider, origin, cache, private, locked, registries_yaml)
    finally:
        provider.cleanup()
        for registry in (origin, cache, private, locked):
            registry.stop()
            remove_images_of(registry.host)


def pull(world: World, image: str) -> tuple[Reply, list[dict[str, Any]]]:
    reply = world.provider.call("POST", "/system/images/pull", {"image": image})
    lines = [json.loads(line) for line in reply.text.splitlines()] if reply.status == 200 else []
    return reply, lines


def local_tags() -> str:
    command = ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def test_a_pull_goes_through_the_mirror_with_progress_and_keeps_the_users_name(world: World) -> None:
    image = f"{world.origin.host}/pft/echo:v1"
    world.mirrors(f'mirrors:\n  "{world.origin.host}": ["{world.cache.url}"]\n')
    remove_local(image)
    reply, lines = pull(world, image)
    assert reply.status == 200, reply.text
    assert any(line.get("status") for line in lines[:-1])  # Docker's progress, line by line
    assert (lines[-1]["image"], lines[-1]["source"]) == (image, world.cache.url)
    assert lines[-1]["digest"].startswith("sha256:")
    assert "/v2/pft/echo/manifests/v1" in world.cache.log()  # the mirror served it
    tags = local_tags()
    assert image in tags
    assert f"{world.cache.host}/pft/echo" not in tags  # the mirror's name is not left behind


def test_fallback_to_the_registry_when_the_mirror_is_down_and_none_when_forbidden(world: World) -> None:
    image = f"{world.origin.host}/pft/hello:v1"
    dead = f"http://127.0.0.1:{free_port()}"
    world.mirrors(f'mirrors:\n  "*": ["{dead}"]\n')
    remove_local(image)
    reply, lines = pull(world, image)
    assert reply.status == 200, reply.text
    assert lines[-1]["source"] == world.origin.host
    world.mirrors(f'mirrors:\n  "*": ["{dead}"]\nfallback: false\n')
    remove_local(image)
    refused, _ = pull(world, image)
    assert refused.status == 400
    assert f"image {image} could not be pulled; tried {dead}:" in refused.text
    assert world.origin.host + ":" not in refused.text.split("tried", 1)[1]  # the registry was not asked
    world.mirrors("mirrors: {}\n")


@pytest.mark.parametrize(("unknown", "answer"), [(True, "manifest unknown"), (False, "")], ids=["image", "registry"])
def test_pull_errors_are_400_naming_the_image_and_the_sources(world: World, unknown: bool, answer: str) -> None:
    """An image the registry does not have, and a registry that does not answer."""
    image = f"{world.origin.host}/pft/missing:v1" if unknown else f"127.0.0.1:{free_port()}/pft/echo:v1"
    reply, _ = pull(world, image)
    assert reply.status == 400
    assert f"image {image} could not be pulled; tried" in reply.text
    assert answer in reply.text


def test_a_registry_that_requires_credentials(world: World) -> None:
    image = f"{world.private.host}/pft/secret:v1"
    remove_local(image)
    anonymous = subprocess.run(["docker", "--config", "/nonexistent", "pull", image], capture_output=True, text=True)
    assert anonymous.returncode != 0  # the registry does require credentials
    reply, lines = pull(world, image)  # with PYFAASD_DOCKER_CONFIG's
    assert reply.status == 200, reply.text
    assert lines[-1]["source"] == world.private.host
    refused, _ = pull(world, f"{world.locked.host}/pft/secret:v1")  # no credentials for this one
    assert refused.status == 400
    assert f"image {world.locked.host}/pft/secret:v1 could not be pulled; tried" in refused.text
    assert f"{world.locked.host}: " in refused.text
    assert "no basic auth credentials" in refused.text or "unauthorized" in refused.text.lower()
    remove_local(image)


def test_refresh_rolls_exactly_the_function_whose_image_changed(world: World, name: str) -> None:
    echo, hello = f"{world.origin.host}/pft/echo:v1", f"{world.origin.host}/pft/hello:v1"
    for suffix, image in (("e", echo), ("h", hello)):
        reply = world.provider.call("POST", "/system/functions", {"service": f"{name}{suffix}", "image": image})
        assert reply.status == 202, reply.text
    push(HELLO, echo)  # the echo tag now names another image upstream
    try:
        reply = world.provider.call("POST", "/system/images/refresh", {})
        assert reply.status == 200, reply.text
        result = reply.json()
        assert f"{name}e.openfaas-fn" in result["rolled"]
        assert f"{name}h.openfaas-fn" in result["unchanged"]
        assert result["failed"] == {}
    finally:
        push(ECHO, echo)
        for suffix in ("e", "h"):
            world.provider.call("DELETE", "/system/functions", {"functionName": f"{name}{suffix}"})


def test_a_refresh_through_the_pull_through_cache_sees_a_tag_that_moved_upstream(world: World, name: str) -> None:
    echo = f"{world.origin.host}/pft/echo:v2"
    push(ECHO, echo)
    world.mirrors(f'mirrors:\n  "{world.origin.host}": ["{world.cache.url}"]\nfallback: false\n')
    try:
        reply = world.provider.call("POST", "/system/functions", {"service": name, "image": echo})
        assert reply.status == 202, reply.text
        push(HELLO, echo)  # moved upstream, behind the cache
        result = world.provider.call("POST", "/system/images/refresh", {"functions": [name]}).json()
        assert result == {"rolled": [f"{name}.openfaas-fn"], "unchanged": [], "failed": {}}
    finally:
        world.provider.call("DELETE", "/system/functions", {"functionName": name})
        world.mirrors("mirrors: {}\n")
