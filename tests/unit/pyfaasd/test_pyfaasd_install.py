import dataclasses
import stat
from pathlib import Path

import pytest

from pyfaasd import cli, install
from pyfaasd.install import (
    ChangeMode,
    CreateCredentials,
    HostState,
    InstallOptions,
    MakeDir,
    RemoveFile,
    RemoveTree,
    RunCommand,
    UninstallOptions,
    WriteFile,
)
from tests.helpers import installable_executable

EXECUTABLE = installable_executable()
SYSTEMCTL = "/usr/bin/systemctl"
BOTH = ("pyfaasd-provider.service", "pyfaasd.service")


@pytest.fixture
def opts(tmp_path) -> InstallOptions:
    return InstallOptions(
        executable=EXECUTABLE,
        state_dir=tmp_path / "state",
        unit_dir=tmp_path / "units",
        env_file=Path("/etc/pyfaasd/pyfaasd.env"),
    )


@pytest.fixture
def rendered(opts) -> dict[str, str]:
    return install.render_units(install.load_templates(), opts)


def host(opts, *, units=None, state=None, secrets=None, creds=frozenset(), systemd=True) -> HostState:
    return HostState(
        unit_files=units or dict.fromkeys(BOTH),
        dir_modes={opts.state_dir: state, opts.state_dir / "secrets": secrets},
        credential_files=frozenset(creds),
        systemctl=SYSTEMCTL if systemd else None,
        systemd_running=systemd,
    )


class Recorder:
    """A fake systemctl: records each command and answers with a fixed status."""

    def __init__(self, status: int = 0) -> None:
        self.commands: list[tuple[str, ...]] = []
        self.status = status

    def __call__(self, argv) -> int:
        self.commands.append(tuple(argv))
        return self.status


def real_host(opts) -> HostState:
    """What observe() sees in the temp dirs, but with systemd pretended to run."""
    seen = install.observe(opts.state_dir, opts.unit_dir)
    return HostState(seen.unit_files, seen.dir_modes, seen.credential_files, SYSTEMCTL, True)


# -- planning ---------------------------------------------------------------------------------------------


def test_plan_install_on_a_fresh_host_does_everything_in_order(opts, rendered):
    plan = install.plan_install(opts, rendered, host(opts))
    assert plan.actions == (
        MakeDir(opts.state_dir, 0o755),
        MakeDir(opts.state_dir / "secrets", 0o700),
        CreateCredentials(opts.state_dir / "secrets"),
        WriteFile(opts.unit_dir / BOTH[0], rendered[BOTH[0]]),
        WriteFile(opts.unit_dir / BOTH[1], rendered[BOTH[1]]),
        RunCommand((SYSTEMCTL, "daemon-reload")),
        RunCommand((SYSTEMCTL, "enable", "--now", *BOTH)),
    )


def test_plan_install_when_installed_only_enables(opts, rendered):
    current = host(opts, units=rendered, state=0o755, secrets=0o700, creds={"basic-auth-user", "basic-auth-password"})
    plan = install.plan_install(opts, rendered, current)
    assert plan.actions == (RunCommand((SYSTEMCTL, "enable", "--now", *BOTH)),)
    assert any("is up to date" in note for note in plan.notes)
    assert any("credentials" in note and "kept" in note for note in plan.notes)


def test_plan_install_rewrites_a_changed_unit_and_restarts_it_if_running(opts, rendered):
    units = {BOTH[0]: rendered[BOTH[0]], BOTH[1]: "[Unit]\nDescription=old\n"}
    current = host(opts, units=units, state=0o755, secrets=0o755, creds={"basic-auth-user"})
    plan = install.plan_install(opts, rendered, current)
    assert plan.actions == (
        ChangeMode(opts.state_dir / "secrets", 0o700),
        CreateCredentials(opts.state_dir / "secrets"),  # the missing password file
        WriteFile(opts.unit_dir / BOTH[1], rendered[BOTH[1]], replaces=True),
        RunCommand((SYSTEMCTL, "daemon-reload")),
        RunCommand((SYSTEMCTL, "try-restart", BOTH[1])),
        RunCommand((SYSTEMCTL, "enable", "--now", *BOTH)),
    )


def test_plan_install_no_start_enables_without_starting(opts, rendered):
    units = dict.fromkeys(BOTH, "old")
    no_start = InstallOptions(opts.executable, opts.state_dir, opts.unit_dir, opts.env_file, start=False)
    plan = install.plan_install(no_start, rendered, host(opts, units=units))
    commands = [a.argv for a in plan.actions if isinstance(a, RunCommand)]
    assert commands == [(SYSTEMCTL, "daemon-reload"), (SYSTEMCTL, "enable", *BOTH)]


def test_plan_uninstall_stops_the_gateway_first_and_keeps_the_state(opts):
    current = host(opts, units=dict.fromkeys(BOTH, "x"), state=0o755)
    plan = install.plan_uninstall(UninstallOptions(opts.state_dir, opts.unit_dir), current)
    assert plan.actions == (
        RunCommand((SYSTEMCTL, "disable", "--now", "pyfaasd.service", "pyfaasd-provider.service")),
        RemoveFile(opts.unit_dir / "pyfaasd.service"),
        RemoveFile(opts.unit_dir / "pyfaasd-provider.service"),
        RunCommand((SYSTEMCTL, "daemon-reload")),
    )
    assert any("--purge" in note for note in plan.notes)


def test_plan_install_with_the_swarm_backend_adds_the_nats_unit_between_provider_and_gateway(opts):
    swarm = dataclasses.replace(opts, backend=install.Backend.SWARM)
    rendered = install.render_units(install.load_templates(), swarm)
    three = ("pyfaasd-provider.service", "pyfaasd-nats.service", "pyfaasd.service")
    plan = install.plan_install(swarm, rendered, host(opts))
    assert [a.path.name for a in plan.actions if isinstance(a, WriteFile)] == list(three)
    assert plan.actions[-1] == RunCommand((SYSTEMCTL, "enable", "--now", *three))


def test_plan_install_with_the_docker_backend_removes_a_nats_unit_left_by_the_swarm_backend(opts, rendered):
    units = {**rendered, "pyfaasd-nats.service": "x"}
    current = host(opts, units=units, state=0o755, secrets=0o700, creds={"basic-auth-user", "basic-auth-password"})
    plan = install.plan_install(opts, rendered, current)
    assert plan.actions == (
        RunCommand((SYSTEMCTL, "disable", "--now", "pyfaasd-nats.service")),
        RemoveFile(opts.unit_dir / "pyfaasd-nats.service"),
        RunCommand((SYSTEMCTL, "daemon-reload")),
        RunCommand((SYSTEMCTL, "enable", "--now", *BOTH)),
    )


def test_plan_uninstall_removes_the_nats_unit_after_the_gateway(opts):
    names = ("pyfaasd-provider.service", "pyfaasd-nats.service", "pyfaasd.service")
    current = host(opts, units=dict.fromkeys(names, "x"), state=0o755)
    plan = install.plan_uninstall(UninstallOptions(opts.state_dir, opts.unit_dir), current)
    assert plan.actions[0] == RunCommand((SYSTEMCTL, "disable", "--now", *reversed(names)))
    assert [a.path.name for a in plan.actions if isinstance(a, RemoveFile)] == list(reversed(names))


def test_plan_uninstall_purge_removes_the_state_dir(opts):
    current = host(opts, state=0o755)
    plan = install.plan_uninstall(UninstallOptions(opts.state_dir, opts.unit_dir, purge=True), current)
    assert plan.actions == (RemoveTree(opts.state_dir),)  # no units: no systemctl at all


# -- running ------------------------------------------------------------------------------------------------


def test_install_dry_run_prints_the_plan_and_changes_nothing(opts, tmp_path):
    lines: list[str] = []
    code = install.install(opts, dry_run=True, out=lines.append, err=lines.append)
    assert code == 0
    assert not opts.state_dir.exists()
    assert not opts.unit_dir.exists()
    text = "\n".join(lines)
    for expected in (
        f"create directory {opts.state_dir} (mode 0755)",
        f"create directory {opts.state_dir / 'secrets'} (mode 0700)",
        "create basic-auth credentials",
        f"write {opts.unit_dir / BOTH[0]}",
        f"write {opts.unit_dir / BOTH[1]}",
        "systemctl daemon-reload",
        f"systemctl enable --now {BOTH[0]} {BOTH[1]}",
        f"cat {opts.state_dir}/secrets/basic-auth-password | faas-cli login --username admin --password-stdin",
    ):
        assert expected in text


def test_install_writes_state_credentials_and_units_then_runs_systemctl(opts, rendered):
    runner = Recorder()
    lines: list[str] = []
    code = install.install(opts, host=real_host(opts), runner=runner, out=lines.append, err=lines.append)
    assert code == 0, lines
    secrets = opts.state_dir / "secrets"
    assert stat.S_IMODE(opts.state_dir.stat().st_mode) == 0o755
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    for name in ("basic-auth-user", "basic-auth-password"):
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o600
    for name in BOTH:
        assert (opts.unit_dir / name).read_text() == rendered[name]
        assert stat.S_IMODE((opts.unit_dir / name).stat().st_mode) == 0o644
    assert runner.commands == [(SYSTEMCTL, "daemon-reload"), (SYSTEMCTL, "enable", "--now", *BOTH)]
    password = (secrets / "basic-auth-password").read_text().strip()
    text = "\n".join(lines)
    assert password not in text
    assert "faas-cli login --username admin --password-stdin" in text


def test_install_twice_changes_nothing_the_second_time(opts):
    assert install.install(opts, host=real_host(opts), runner=Recorder(), out=lambda _: None) == 0
    password = (opts.state_dir / "secrets" / "basic-auth-password").read_text()
    inodes = {name: (opts.unit_dir / name).stat().st_ino for name in BOTH}
    runner = Recorder()
    lines: list[str] = []
    assert install.install(opts, host=real_host(opts), runner=runner, out=lines.append) == 0
    assert runner.commands == [(SYSTEMCTL, "enable", "--now", *BOTH)]
    assert {name: (opts.unit_dir / name).stat().st_ino for name in BOTH} == inodes  # not rewritten
    assert (opts.state_dir / "secrets" / "basic-auth-password").read_text() == password
    assert sum("is up to date" in line for line in lines) == 2


def test_install_without_systemd_says_to_use_pyfaasd_up_and_changes_nothing(opts):
    lines: list[str] = []
    code = install.install(opts, host=host(opts, systemd=False), runner=Recorder(), out=lines.append, err=lines.append)
    assert code == 1
    assert "pyfaasd up" in "\n".join(lines)
    assert not opts.state_dir.exists()


def test_install_dry_run_without_systemd_still_succeeds_with_a_note(opts):
    lines: list[str] = []
    assert install.install(opts, dry_run=True, host=host(opts, systemd=False), out=lines.append) == 0
    assert any("pyfaasd up" in line for line in lines)


def test_install_reports_a_failing_systemctl(opts):
    errors: list[str] = []
    code = install.install(opts, host=real_host(opts), runner=Recorder(status=1), out=lambda _: None, err=errors.append)
    assert code == 1
    assert "systemctl daemon-reload exited with status 1" in errors[0]


def test_install_refuses_a_missing_executable(opts, tmp_path):
    bad = InstallOptions(tmp_path / "nope", opts.state_dir, opts.unit_dir)
    errors: list[str] = []
    assert install.install(bad, host=real_host(opts), out=lambda _: None, err=errors.append) == 2
    assert errors[0].startswith("pyfaasd install: --pyfaasd: ")


def test_uninstall_removes_units_and_keeps_state_unless_purged(opts):
    assert install.install(opts, host=real_host(opts), runner=Recorder(), out=lambda _: None) == 0
    runner = Recorder()
    lines: list[str] = []
    keep = UninstallOptions(opts.state_dir, opts.unit_dir)
    assert install.uninstall(keep, host=real_host(opts), runner=runner, out=lines.append) == 0
    assert not any((opts.unit_dir / name).exists() for name in BOTH)
    assert (opts.state_dir / "secrets" / "basic-auth-password").exists()
    assert runner.commands[0] == (SYSTEMCTL, "disable", "--now", "pyfaasd.service", "pyfaasd-provider.service")
    assert runner.commands[-1] == (SYSTEMCTL, "daemon-reload")
    assert any("faas-cli login" in line for line in lines)

    purge = UninstallOptions(opts.state_dir, opts.unit_dir, purge=True)
    assert install.uninstall(purge, host=real_host(opts), runner=Recorder(), out=lines.append) == 0
    assert not opts.state_dir.exists()


def test_uninstall_dry_run_changes_nothing(opts):
    assert install.install(opts, host=real_host(opts), runner=Recorder(), out=lambda _: None) == 0
    runner = Recorder()
    lines: list[str] = []
    purge = UninstallOptions(opts.state_dir, opts.unit_dir, purge=True)
    assert install.uninstall(purge, dry_run=True, host=real_host(opts), runner=runner, out=lines.append) == 0
    assert runner.commands == []
    assert all((opts.unit_dir / name).exists() for name in BOTH)
    assert opts.state_dir.exists()
    assert f"remove {opts.state_dir} and everything in it" in "\n".join(lines)


# -- command line -----------------------------------------------------------------------------------------------


def test_cli_install_dry_run_uses_the_flags(tmp_path, capsys):
    state, units = tmp_path / "state", tmp_path / "units"
    args = ["install", "--dry-run", "--state-dir", str(state), "--unit-dir", str(units)]
    code = cli.main([*args, "--env-file", "/etc/x.env", "--no-start", "--pyfaasd", str(EXECUTABLE)])
    assert code == 0
    out = capsys.readouterr().out
    assert f"write {units / 'pyfaasd.service'}" in out
    assert f"systemctl enable {BOTH[0]} {BOTH[1]}" in out
    assert not state.exists()
    assert not units.exists()


def test_cli_uninstall_dry_run(tmp_path, capsys):
    assert cli.main(["uninstall", "--dry-run", "--purge", "--state-dir", str(tmp_path), "--unit-dir", "/nonexist"]) == 0
    assert f"remove {tmp_path} and everything in it" in capsys.readouterr().out
    assert tmp_path.exists()


def test_cli_install_on_this_machine_without_systemd_exits_non_zero(tmp_path, capsys):
    if install.observe(tmp_path, tmp_path).systemd_usable:
        pytest.skip("systemd runs here; this checks the refusal on machines without it")
    code = cli.main(
        ["install", "--state-dir", str(tmp_path / "s"), "--unit-dir", str(tmp_path / "u"), "--pyfaasd", str(EXECUTABLE)]
    )
    assert code == 1
    assert "pyfaasd up" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# -- the command on PATH ------------------------------------------------------------------------------------------


def test_install_links_the_command_once_and_keeps_a_file_in_its_place(opts, tmp_path):
    link = tmp_path / "bin" / "pyfaasd"
    linked = dataclasses.replace(opts, command_link=link)
    lines: list[str] = []
    assert install.install(linked, host=real_host_with_link(linked), runner=Recorder(), out=lines.append) == 0
    assert link.is_symlink()
    assert link.readlink() == opts.executable
    assert f"link {link} -> {opts.executable}" in "\n".join(lines)

    again = install.plan_install(
        linked, install.render_units(install.load_templates(), linked), real_host_with_link(linked)
    )
    assert not [a for a in again.actions if isinstance(a, install.LinkCommand)]
    assert f"{link} links to {opts.executable}" in again.notes

    link.unlink()
    link.write_text("#!/bin/sh\n")
    kept = install.plan_install(
        linked, install.render_units(install.load_templates(), linked), real_host_with_link(linked)
    )
    assert not [a for a in kept.actions if isinstance(a, install.LinkCommand)]
    assert any("is a file, not a link; kept" in note for note in kept.notes)


def test_install_replaces_a_link_to_another_pyfaasd(opts, tmp_path):
    link = tmp_path / "pyfaasd"
    link.symlink_to(tmp_path / "old" / "pyfaasd")
    linked = dataclasses.replace(opts, command_link=link)
    plan = install.plan_install(
        linked, install.render_units(install.load_templates(), linked), real_host_with_link(linked)
    )
    assert install.LinkCommand(link, opts.executable) in plan.actions


def test_cli_install_links_by_default_and_not_with_no_link(tmp_path, capsys):
    base = ["install", "--dry-run", "--state-dir", str(tmp_path / "s"), "--unit-dir", str(tmp_path / "u")]
    assert cli.main([*base, "--pyfaasd", str(EXECUTABLE), "--link", str(tmp_path / "pyfaasd")]) == 0
    assert f"link {tmp_path / 'pyfaasd'} -> {EXECUTABLE}" in capsys.readouterr().out
    assert cli.main([*base, "--pyfaasd", str(EXECUTABLE), "--no-link"]) == 0
    assert "link " not in capsys.readouterr().out
    assert not (tmp_path / "pyfaasd").exists()


def real_host_with_link(opts, link=None) -> HostState:
    seen = install.observe(opts.state_dir, opts.unit_dir, command_link=link or opts.command_link)
    return dataclasses.replace(real_host(opts), command_link=seen.command_link)


def test_uninstall_removes_the_command_link_but_not_a_file(opts, tmp_path):
    link = tmp_path / "pyfaasd"
    # A link to a `pyfaasd` (what install makes); not to EXECUTABLE, which is /usr/bin/env in a clone under /tmp.
    script = tmp_path / "venv" / "bin" / "pyfaasd"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    link.symlink_to(script)
    options = install.UninstallOptions(opts.state_dir, opts.unit_dir, command_link=link)
    assert install.uninstall(options, host=real_host_with_link(opts, link), runner=Recorder(), out=lambda _: None) == 0
    assert not link.is_symlink()
    link.write_text("#!/bin/sh\n")
    plan = install.plan_uninstall(options, real_host_with_link(opts, link))
    assert RemoveFile(link) not in plan.actions
