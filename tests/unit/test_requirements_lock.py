"""requirements.lock matches pyproject.toml, and the runtime image's part of it is complete."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)", re.MULTILINE)


def locked() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall(LOCK.read_text())}


def test_every_dependency_is_locked_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    extras = project["optional-dependencies"]
    for text in [*project["dependencies"], *extras["test"], *extras["images"]]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is in pyproject.toml but not in requirements.lock: run scripts/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_every_pin_carries_hashes() -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n\n", 1)[-1].lstrip("#\n "))
    for block in blocks:
        if PIN.match(block):
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_runtime_subset_is_the_watchdogs_closure_with_hashes() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/lock-subset"), str(LOCK), "aiohttp", "uvloop", "structlog"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {canonicalize_name(name) for name, _ in PIN.findall(out)}
    assert {"aiohttp", "multidict", "yarl", "uvloop", "structlog"} <= names
    assert not names & {"pytest", "mypy", "ruff", "aiodocker", "pyroute2", "pyyaml"}
    assert {name: locked()[name] for name in names} == {
        canonicalize_name(name): version for name, version in PIN.findall(out)
    }
    for entry in re.split(r"\n(?=[A-Za-z0-9])", out.strip()):
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_runtime_subset_refuses_a_package_not_in_the_lock() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/lock-subset"), str(LOCK), "no-such-package"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "no-such-package" in result.stderr
