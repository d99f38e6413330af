"""requirements.lock matches pyproject.toml, and the runtime image's part of it is complete."""

from __future__ import annotations

import ast
import importlib.metadata
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


def runtime_packages() -> list[str]:
    """The packages scripts/build-images installs beside the watchdog (its RUNTIME_PACKAGES line)."""
    match = re.search(r'^RUNTIME_PACKAGES="([^"]*)"', (ROOT / "scripts/build-images").read_text(), re.MULTILINE)
    assert match is not None
    return match.group(1).split()


def runtime_subset() -> str:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts/lock-subset"), str(LOCK), *runtime_packages()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def third_party_imports(*packages: str) -> set[str]:
    """The distributions the modules of ``packages`` import, other than the standard library and our own."""
    ours = {"servicekit", "watchdog", "gateway", "provider", "netconf", "pyfaasd"}
    names: set[str] = set()
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    distributions = importlib.metadata.packages_distributions()
    return {
        canonicalize_name(distributions[name][0])
        for name in names - ours - set(sys.stdlib_module_names) - {"__future__"}
    }


def test_the_image_gets_every_package_the_watchdog_imports() -> None:
    names = {canonicalize_name(name) for name, _ in PIN.findall(runtime_subset())}
    missing = third_party_imports("watchdog", "servicekit") - names
    assert not missing, f"add {sorted(missing)} to RUNTIME_PACKAGES in scripts/build-images"


def test_runtime_subset_is_the_watchdogs_closure_with_hashes() -> None:
    out = runtime_subset()
    names = {canonicalize_name(name) for name, _ in PIN.findall(out)}
    assert {"aiohttp", "multidict", "yarl", "uvloop", "structlog", "httptools"} <= names
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
