"""pyfaasd install and Docker's daemon.json: plain-HTTP mirrors merged into insecure-registries, after asking."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from provider.registries import RegistriesConfig
from pyfaasd import install
from pyfaasd.docker_daemon import DaemonJsonError, insecure_mirrors, merged
from pyfaasd.install import HostState, InstallOptions, MergeDaemonJson, RunCommand
from tests.helpers import installable_executable

MIRRORS = RegistriesConfig(
    {
        "docker.io": ("http://10.0.0.2:5000", "https://mirror.example.net", "http://127.0.0.1:5001"),
        "*": ("http://cache.lan:5000", "http://localhost:5002", "http://10.0.0.2:5000"),
    }
)


def test_only_plain_http_mirrors_off_loopback_need_listing() -> None:
    assert insecure_mirrors(MIRRORS) == ["10.0.0.2:5000", "cache.lan:5000"]


def test_the_merge_keeps_every_other_setting_and_entry() -> None:
    current = json.dumps({"log-driver": "journald", "insecure-registries": ["old.lan:5000"], "debug": True})
    result = merged(current, ["10.0.0.2:5000", "old.lan:5000"])
    assert result is not None
    text, added = result
    assert added == ["10.0.0.2:5000"]
    assert json.loads(text) == {
        "log-driver": "journald",
        "insecure-registries": ["old.lan:5000", "10.0.0.2:5000"],
        "debug": True,
    }
    assert merged(text, ["10.0.0.2:5000"]) is None  # nothing missing: nothing written
    assert merged(None, ["a:1"]) == ('{\n  "insecure-registries": [\n    "a:1"\n  ]\n}\n', ["a:1"])


@pytest.mark.parametrize("current", ["{not json", "[1]", '{"insecure-registries": "a:1"}'])
def test_a_daemon_json_that_cannot_be_merged_is_left_alone(current: str) -> None:
    with pytest.raises(DaemonJsonError, match="fix it by hand"):
        merged(current, ["a:1"])


@pytest.fixture
def opts(tmp_path: Path) -> InstallOptions:
    return InstallOptions(
        executable=installable_executable(),
        state_dir=tmp_path / "state",
        unit_dir=tmp_path / "units",
        daemon_json=tmp_path / "daemon.json",
    )


def seen(opts: InstallOptions, daemon_json: str | None = None) -> HostState:
    found = install.observe(opts.state_dir, opts.unit_dir)
    return replace(
        found, systemctl="/usr/bin/systemctl", systemd_running=True, daemon_json=daemon_json, registries=MIRRORS
    )


class Recorder:
    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str]) -> int:
        self.commands.append(tuple(argv))
        return 0


def test_the_plan_merges_then_reloads_docker(opts: InstallOptions) -> None:
    plan = install.plan_install(
        opts, install.render_units(install.load_templates(), opts), seen(opts, '{"debug": true}')
    )
    merge, reload = plan.actions[-2:]
    assert isinstance(merge, MergeDaemonJson)
    assert merge.added == ("10.0.0.2:5000", "cache.lan:5000")
    assert reload == RunCommand(("/usr/bin/systemctl", "reload", "docker"))
    assert '+  "debug": true,' in merge.diff


def test_dry_run_shows_the_diff_and_changes_nothing(opts: InstallOptions) -> None:
    lines: list[str] = []
    assert install.install(opts, dry_run=True, host=seen(opts), out=lines.append) == 0
    text = "\n".join(lines)
    assert "add 10.0.0.2:5000, cache.lan:5000 to insecure-registries" in text
    assert '+    "10.0.0.2:5000",' in text
    assert not opts.daemon_json.exists()


def test_declined_or_unattended_installs_leave_daemon_json_alone(opts: InstallOptions) -> None:
    runner = Recorder()
    lines: list[str] = []
    code = install.install(opts, host=seen(opts), runner=runner, out=lines.append, confirm=lambda question: False)
    assert code == 0
    assert not opts.daemon_json.exists()
    assert all("docker" not in command for command in runner.commands)
    assert any("pyfaasd install --yes" in line for line in lines)


def test_yes_merges_and_reloads(opts: InstallOptions) -> None:
    opts.daemon_json.write_text('{"debug": true}\n')
    runner = Recorder()
    code = install.install(
        replace(opts, assume_yes=True),
        host=seen(opts, '{"debug": true}\n'),
        runner=runner,
        out=lambda line: None,
        confirm=lambda question: pytest.fail("asked despite --yes"),
    )
    assert code == 0
    assert json.loads(opts.daemon_json.read_text()) == {
        "debug": True,
        "insecure-registries": ["10.0.0.2:5000", "cache.lan:5000"],
    }
    assert runner.commands[-1] == ("/usr/bin/systemctl", "reload", "docker")
