"""The commit /system/info reports: set at build time into the package, never looked up with git at run time."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicekit import version

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def fresh() -> Iterator[None]:
    version.commit_sha.cache_clear()
    yield
    version.commit_sha.cache_clear()
    sys.modules.pop("servicekit._build_info", None)


def test_a_built_copy_reports_the_commit_baked_into_it(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(version.ENV_COMMIT, raising=False)
    baked = types.ModuleType("servicekit._build_info")
    baked.COMMIT = "0123456789abcdef0123456789abcdef01234567"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "servicekit._build_info", baked)
    assert version.commit_sha() == "0123456789abcdef0123456789abcdef01234567"


def test_pyfaasd_commit_wins(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(version.ENV_COMMIT, "feedface")
    assert version.commit_sha() == "feedface"


def test_the_build_hook_takes_pyfaasd_commit_or_the_checkouts_head(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("pyfaasd_setup_hook", ROOT / "setup.py")
    assert spec is not None
    assert spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    monkeypatch.setattr("setuptools.setup", lambda **kwargs: None)  # import the hook without building
    spec.loader.exec_module(hook)
    monkeypatch.setenv("PYFAASD_COMMIT", "abc")
    assert hook.build_commit(ROOT) == "abc"
    monkeypatch.delenv("PYFAASD_COMMIT")
    head = version._read_head(ROOT / ".git")
    assert hook.build_commit(ROOT) == head
    assert hook.build_commit(ROOT / "no-such-dir") == ""
