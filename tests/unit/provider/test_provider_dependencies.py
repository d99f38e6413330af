"""provider.dependencies: one install per (runtime image, requirements), nothing left by a failed one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provider.dependencies import DependencySets, PipSettings, requirements_of, set_key
from provider.errors import DependencyInstallError


class FakeInstaller:
    """Plays pip: writes a package into the /out bind, or fails with pip-like output."""

    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.configs: list[dict[str, Any]] = []

    async def run_to_completion(
        self, name: str, config: dict[str, Any], timeout_s: float, on_line: Callable[[str], None]
    ) -> tuple[int, list[str]]:
        self.configs.append(config)
        await asyncio.sleep(self.delay)
        binds = dict(b.rsplit(":", 1)[0].split(":", 1)[::-1] for b in config["HostConfig"]["Binds"])
        wanted = Path(binds["/in"], "requirements.txt").read_text()
        lines = [f"Collecting {wanted.strip()}"]
        if self.fail:
            return 1, [*lines, "ERROR: Could not find a version that satisfies the requirement nosuch"]
        package = Path(binds["/out"]) / "six.py"
        package.write_text("X = 1\n")
        package.chmod(0o600)
        for line in lines:
            on_line(line)
        return 0, [*lines, "Successfully installed six-1.16.0"]


@pytest.fixture
def sets(tmp_path: Path) -> DependencySets:
    return DependencySets(tmp_path / "deps", FakeInstaller())


async def test_a_set_is_installed_once_and_readable_by_the_function_user(sets: DependencySets) -> None:
    first = await sets.ensure("rt:latest", "sha256:img", b"six\n")
    second = await sets.ensure("rt:latest", "sha256:img", b"six\n")
    assert (first.key, first.path) == (second.key, second.path)
    assert (first.installed, second.installed) == (True, False)
    assert (first.path / "six.py").stat().st_mode & 0o777 == 0o644
    assert first.path.stat().st_mode & 0o777 == 0o755
    assert len(sets.runner.configs) == 1  # type: ignore[attr-defined]
    assert sets.keys() == [first.key]


async def test_concurrent_deploys_of_the_same_requirements_share_one_install(tmp_path: Path) -> None:
    installer = FakeInstaller(delay=0.05)
    sets = DependencySets(tmp_path / "deps", installer)
    results = await asyncio.gather(*(sets.ensure("rt", "sha256:img", b"six\n") for _ in range(5)))
    assert len({r.key for r in results}) == 1
    assert len(installer.configs) == 1


async def test_a_failed_install_is_422_with_pips_last_lines_and_leaves_nothing(tmp_path: Path) -> None:
    sets = DependencySets(tmp_path / "deps", FakeInstaller(fail=True))
    with pytest.raises(DependencyInstallError, match=r"exit status 1\):\nCollecting nosuch\nERROR: Could not find"):
        await sets.ensure("rt", "sha256:img", b"nosuch\n")
    assert list((tmp_path / "deps").iterdir()) == []


def test_the_key_follows_the_runtime_image_the_requirements_and_pips_sources() -> None:
    base = set_key("sha256:a", b"six\n", PipSettings())
    assert set_key("sha256:a", b"six\n", PipSettings()) == base
    assert set_key("sha256:b", b"six\n", PipSettings()) != base
    assert set_key("sha256:a", b"six==1\n", PipSettings()) != base
    assert set_key("sha256:a", b"six\n", PipSettings(index_url="http://127.0.0.1:1/simple")) != base
    assert set_key("sha256:a", b"six\n", PipSettings(find_links=(Path("/w"),))) != base


async def test_local_wheels_only_means_no_network_and_no_index(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    installer = FakeInstaller()
    sets = DependencySets(tmp_path / "deps", installer, PipSettings(find_links=(wheels,)), {"com.pyfaasd.bridge": "b"})
    await sets.ensure("rt", "sha256:img", b"six\n")
    config = installer.configs[0]
    assert config["Image"] == "sha256:img"
    assert config["HostConfig"]["NetworkMode"] == "none"
    assert f"{wheels}:/find-links/0:ro" in config["HostConfig"]["Binds"]
    assert config["Cmd"][-3:] == ["--find-links", "/find-links/0", "--no-index"]
    assert config["Labels"]["com.pyfaasd.bridge"] == "b"
    assert config["HostConfig"]["CapDrop"] == ["ALL"]


async def test_an_index_url_keeps_the_network(tmp_path: Path) -> None:
    installer = FakeInstaller()
    sets = DependencySets(tmp_path / "deps", installer, PipSettings(index_url="https://pypi.example/simple"))
    await sets.ensure("rt", "sha256:img", b"six\n")
    config = installer.configs[0]
    assert config["HostConfig"]["NetworkMode"] == "bridge"
    assert config["Cmd"][-2:] == ["--index-url", "https://pypi.example/simple"]


def test_requirements_of_ignores_a_file_of_comments(tmp_path: Path) -> None:
    assert requirements_of(tmp_path) is None
    (tmp_path / "requirements.txt").write_text("# nothing yet\n\n")
    assert requirements_of(tmp_path) is None
    (tmp_path / "requirements.txt").write_text("# pinned\nsix==1.16.0\n")
    assert requirements_of(tmp_path) == b"# pinned\nsix==1.16.0\n"


async def test_unused_sets_are_pruned_and_used_ones_kept(sets: DependencySets) -> None:
    kept = await sets.ensure("rt", "sha256:img", b"six\n")
    dropped = await sets.ensure("rt", "sha256:img", b"attrs\n")
    assert sets.remove_unused([kept.key]) == [dropped.key]
    assert sets.keys() == [kept.key]
