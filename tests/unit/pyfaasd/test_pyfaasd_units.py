"""The unit templates in systemd/: rendered by pyfaasd.install, and checked by `systemd-analyze verify`.

`systemd-analyze verify` needs no running systemd: it loads the given unit files (and, for dependencies, the
directory they are in plus the system's unit path) in a private test manager. It exits non-zero when a unit
cannot be loaded (an ExecStart= binary that is missing, a Requires= on a missing unit) but only *warns*, with
exit status 0, about unknown directives and values it cannot parse. So a unit passes here only when the exit
status is 0 and nothing is printed about our units; the negative tests prove that catches a broken unit.
"""

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from pyfaasd import install
from tests.helpers import installable_executable

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
REPO = Path(__file__).resolve().parents[3]
EXECUTABLE = installable_executable()


def options(**overrides: Any) -> install.InstallOptions:
    values: dict[str, Any] = {"executable": EXECUTABLE, "state_dir": Path("/var/lib/pyfaasd")}
    values.update(overrides)
    return install.InstallOptions(**values)


def render_into(directory: Path, opts: install.InstallOptions | None = None, templates=None) -> list[Path]:
    rendered = install.render_units(templates or install.load_templates(), opts or options())
    paths = []
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths


def verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_COLOR": "0"},
    )


def about_our_units(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The output lines about our units. Warnings about other units (docker.service, pulled in by Wants=
    and After=, may carry a distribution's own deprecated settings) are not ours to fail on."""
    return [line for line in (result.stdout + result.stderr).splitlines() if any(u in line for u in install.ALL_UNITS)]


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value[:-1])


@pytest.fixture
def rendered() -> dict[str, dict[str, dict[str, list[str]]]]:
    return {name: directives(text) for name, text in install.render_units(install.load_templates(), options()).items()}


def test_templates_are_found_in_the_source_checkout():
    assert install.template_dirs()[0] == REPO / "systemd"
    templates = install.load_templates()
    assert set(templates) == {"pyfaasd-provider.service", "pyfaasd-nats.service", "pyfaasd.service"}
    assert templates["pyfaasd.service"] == (REPO / "systemd" / "pyfaasd.service").read_text()


def test_templates_are_shipped_in_the_wheel_where_template_dirs_looks():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    data_files = config["tool"]["setuptools"]["data-files"]
    shipped = data_files["share/pyfaasd/systemd"]
    assert sorted(Path(p).name for p in shipped) == sorted(install.ALL_UNITS)
    assert all((REPO / p).is_file() for p in shipped)
    assert any(str(d).endswith("share/pyfaasd/systemd") for d in install.template_dirs()[1:])


def test_render_fills_every_placeholder(rendered):
    for name, text in install.render_units(install.load_templates(), options()).items():
        assert "${" not in text, name
    provider = rendered["pyfaasd-provider.service"]["Service"]
    assert provider["ExecStart"] == [f"{EXECUTABLE} provider"]
    assert rendered["pyfaasd.service"]["Service"]["ExecStart"] == [f"{EXECUTABLE} gateway"]
    assert "PYFAASD_STATE_DIR=/var/lib/pyfaasd" in provider["Environment"]
    assert provider["EnvironmentFile"] == ["-/etc/pyfaasd/pyfaasd.env"]
    assert provider["StateDirectory"] == ["pyfaasd"]
    assert provider["WorkingDirectory"] == ["/var/lib/pyfaasd"]


@pytest.mark.parametrize("name", ["pyfaasd-provider.service", "pyfaasd.service"])
def test_units_have_the_service_settings_the_platform_relies_on(rendered, name):
    service = rendered[name]["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartSec"]
    assert service["MemoryMax"]
    assert service["LimitNOFILE"]
    assert service["KillMode"][0] in ("mixed", "process")
    # Longer than the gateway's drain (write_timeout, 60 s by default).
    assert seconds(service["TimeoutStopSec"][0]) > 60
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["PrivateTmp"] == ["yes"]
    assert service["ProtectHome"] == ["yes"]
    assert rendered[name]["Install"]["WantedBy"] == ["multi-user.target"]


def test_provider_unit_orders_after_docker_without_requiring_its_unit(rendered):
    unit = rendered["pyfaasd-provider.service"]["Unit"]
    assert "docker.service" in unit["After"][0].split()
    assert "docker.service" in unit["Wants"][0].split()
    assert "Requires" not in unit
    service = rendered["pyfaasd-provider.service"]["Service"]
    assert service["ProtectSystem"] == ["full"]
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_NETLINK"]
    # iptables may load netfilter modules and netconf writes /proc/sys: neither may be blocked.
    assert "ProtectKernelModules" not in service
    assert "ProtectKernelTunables" not in service
    assert service["RestrictNamespaces"] == ["net"]
    denied = service["CapabilityBoundingSet"][0].removeprefix("~").split()
    for needed in ("CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE"):
        assert needed not in denied


def test_gateway_unit_starts_after_the_provider_and_is_sandboxed_tightly(rendered):
    unit = rendered["pyfaasd.service"]["Unit"]
    assert "pyfaasd-provider.service" in unit["After"][0].split()
    assert "pyfaasd-provider.service" in unit["Wants"][0].split()
    service = rendered["pyfaasd.service"]["Service"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert "StateDirectory" not in service  # it reads the state dir ...
    assert service["ReadWritePaths"] == ["/var/lib/pyfaasd/async"]  # ... and writes only its async queue
    assert service["ExecStartPre"] == ["+/bin/mkdir -p -m 0700 /var/lib/pyfaasd/async"]  # made outside the sandbox
    for option in ("PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "RestrictNamespaces"):
        assert service[option] == ["yes"]


def test_state_dir_outside_var_lib_becomes_a_read_write_path():
    text = install.render_units(install.load_templates(), options(state_dir=Path("/srv/pyfaasd")))
    provider = directives(text["pyfaasd-provider.service"])["Service"]
    assert provider["ReadWritePaths"] == ["/srv/pyfaasd"]
    assert "StateDirectory" not in provider


def test_executable_under_a_home_dir_keeps_home_readable():
    text = install.render_units(install.load_templates(), options(executable=Path("/root/venv/bin/pyfaasd")))
    for name in install.UNITS:
        assert directives(text[name])["Service"]["ProtectHome"] == ["read-only"]


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("state_dir", Path("/var/lib/py faasd"), "--state-dir"),
        ("env_file", Path("/etc/pyfaasd/%i.env"), "--env-file"),
        ("executable", Path("/opt/$HOME/pyfaasd"), "--pyfaasd"),
        ("state_dir", Path("relative/state"), "--state-dir"),
        ("executable", Path("/tmp/venv/bin/pyfaasd"), "--pyfaasd"),
    ],
    ids=["blank", "specifier", "variable", "relative", "private-tmp"],
)
def test_render_refuses_paths_a_unit_cannot_hold(field, value, flag):
    with pytest.raises(install.InstallError, match=f"^{flag}: "):
        install.render_units(install.load_templates(), options(**{field: value}))


def test_render_names_an_unknown_placeholder():
    templates = install.load_templates()
    templates["pyfaasd.service"] += "\nDescription=${nope}\n"
    with pytest.raises(install.InstallError, match="nope"):
        install.render_units(templates, options())


@needs_analyze
def test_systemd_analyze_verify_accepts_the_rendered_units(tmp_path):
    result = verify(render_into(tmp_path))
    assert (result.returncode, about_our_units(result)) == (0, [])


@needs_analyze
def test_systemd_analyze_verify_accepts_the_units_with_a_custom_state_dir(tmp_path):
    opts = options(state_dir=Path("/srv/pyfaasd"), env_file=Path("/root/pyfaasd.env"))
    result = verify(render_into(tmp_path, opts))
    assert (result.returncode, about_our_units(result)) == (0, [])


@needs_analyze
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Type=notify", "Type=notifyy"),
        ("MemoryMax=512M", "MemoryMax=lots"),
        ("KillMode=mixed", "KillMode=mixed\nKillModus=mixed"),
        ("[Service]", "[Servic]"),
    ],
    ids=["bad-value", "bad-size", "unknown-directive", "unknown-section"],
)
def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path, old, new):
    templates = install.load_templates()
    assert old in templates["pyfaasd-provider.service"]
    templates["pyfaasd-provider.service"] = templates["pyfaasd-provider.service"].replace(old, new, 1)
    result = verify(render_into(tmp_path, templates=templates))
    assert any("pyfaasd-provider.service" in line for line in about_our_units(result))


@needs_analyze
def test_systemd_analyze_verify_fails_on_a_missing_executable(tmp_path):
    rendered = install.render_units(install.load_templates(), options(executable=Path("/nonexistent/bin/pyfaasd")))
    path = tmp_path / "pyfaasd-provider.service"
    path.write_text(rendered["pyfaasd-provider.service"])
    result = verify([path])
    assert result.returncode != 0
    assert "/nonexistent/bin/pyfaasd" in result.stderr


def test_the_swarm_backend_runs_both_units_in_the_anchor_s_namespace():
    swarm = options(backend=install.Backend.SWARM)
    units = {name: directives(text) for name, text in install.render_units(install.load_templates(), swarm).items()}
    provider = units["pyfaasd-provider.service"]["Service"]
    gateway = units["pyfaasd.service"]["Service"]
    netns = str(install.SWARM_NETNS)
    # the provider unit makes swarm, overlay and anchor and pins the namespace with full privileges ("+": in the
    # host's mount namespace, where the gateway unit finds it), then enters it itself (it keeps CAP_SYS_ADMIN)
    assert provider["ExecStartPre"] == [f"+{EXECUTABLE} swarm-anchor --pin {netns}"]
    assert provider["ExecStart"] == [f"{EXECUTABLE} provider --netns {netns}"]
    assert "PYFAASD_BACKEND=swarm" in provider["Environment"]
    # the gateway (no capability) is put there by systemd
    assert gateway["NetworkNamespacePath"] == [netns]
    assert units["pyfaasd.service"]["Unit"]["PartOf"] == ["pyfaasd-provider.service"]
    assert "pyfaasd-nats.service" in units["pyfaasd.service"]["Unit"]["After"]  # its queue's server first
    assert "pyfaasd-nats.service" in units["pyfaasd.service"]["Unit"]["Wants"]
    assert gateway["ExecStart"] == [f"{EXECUTABLE} gateway --in-anchor"]
    assert "PYFAASD_BACKEND=swarm" in gateway["Environment"]
    docker = {
        name: directives(text) for name, text in install.render_units(install.load_templates(), options()).items()
    }
    assert "NetworkNamespacePath" not in docker["pyfaasd.service"]["Service"]
    assert "ExecStartPre" not in docker["pyfaasd-provider.service"]["Service"]
    assert "PartOf" not in docker["pyfaasd.service"]["Unit"]  # the docker backend's gateway outlives provider restarts
    assert set(docker) == {
        "pyfaasd-provider.service",
        "pyfaasd.service",
    }  # no NATS: the docker backend's queue is SQLite
    assert "pyfaasd-nats.service" not in " ".join(docker["pyfaasd.service"]["Unit"]["After"])


def test_the_swarm_backend_runs_nats_server_in_the_anchor_s_namespace_before_the_gateway():
    """pyfaasd-nats.service: `pyfaasd nats-server` (the configuration `up --backend swarm` uses, then exec) where
    the gateway finds it, on 127.0.0.1:4222 of the anchor's namespace; its store in <state>/nats, its only write."""
    rendered = install.render_units(install.load_templates(), options(backend=install.Backend.SWARM))
    assert list(rendered) == ["pyfaasd-provider.service", "pyfaasd-nats.service", "pyfaasd.service"]  # start order
    nats = directives(rendered["pyfaasd-nats.service"])
    service = nats["Service"]
    assert service["ExecStart"] == [f"{EXECUTABLE} nats-server"]
    assert service["NetworkNamespacePath"] == [str(install.SWARM_NETNS)]
    assert "PYFAASD_STATE_DIR=/var/lib/pyfaasd" in service["Environment"]
    assert service["EnvironmentFile"] == ["-/etc/pyfaasd/pyfaasd.env"]  # PYFAASD_NATS_URL, as the gateway reads it
    assert service["ExecStartPre"] == ["+/bin/mkdir -p -m 0700 /var/lib/pyfaasd/nats"]
    assert service["ReadWritePaths"] == ["/var/lib/pyfaasd/nats"]
    assert (service["ProtectSystem"], service["CapabilityBoundingSet"]) == (["strict"], [""])
    assert service["Restart"] == ["on-failure"]
    # in the namespace the provider unit pins: after it, and restarted with it (a new anchor, a new namespace)
    assert nats["Unit"]["After"] == ["pyfaasd-provider.service"]
    assert nats["Unit"]["PartOf"] == ["pyfaasd-provider.service"]
    assert nats["Install"]["WantedBy"] == ["multi-user.target"]


@needs_analyze
def test_systemd_accepts_the_swarm_backend_s_units(tmp_path):
    result = verify(render_into(tmp_path, options(backend=install.Backend.SWARM)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert about_our_units(result) == []
