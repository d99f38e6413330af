"""``pyfaasd install`` and ``pyfaasd uninstall``: the systemd units, the state dir and the credentials.

Planning and doing are apart. :func:`observe` looks at the host once (unit files, directories, credential
files, whether systemd runs); :func:`plan_install` and :func:`plan_uninstall` are pure functions of the options
and that observation, returning a list of small :data:`Action` values; :func:`execute` carries them out in
order. ``--dry-run`` prints the plan and stops, so it changes nothing (not even the state dir), and tests
check plans without root.

Install is idempotent: a unit file whose rendered text is already there is not rewritten, directories and
credentials that exist are kept (a wrong directory mode is corrected), ``daemon-reload`` and the restart of
running services happen only when a unit file changed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from provider.registries import RegistriesConfig, RegistriesConfigError
from pyfaasd.docker_daemon import DAEMON_JSON, DaemonJsonError, diff, insecure_mirrors, merged
from servicekit import defaults
from servicekit.auth import DEFAULT_USER, PASSWORD_FILE, USER_FILE, ensure_credentials, secrets_dir
from servicekit.swarm import Backend as Backend  # re-exported: InstallOptions takes it

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_ENV_FILE = Path("/etc/pyfaasd/pyfaasd.env")
DEFAULT_COMMAND_LINK = Path("/usr/local/bin/pyfaasd")  # scripts/setup makes the same link

PROVIDER_UNIT = "pyfaasd-provider.service"
GATEWAY_UNIT = "pyfaasd.service"
NATS_UNIT = "pyfaasd-nats.service"  # swarm backend only: nats-server (JetStream), the async queue
SWARM_NETNS = Path("/run/pyfaasd/swarm-netns")  # the anchor's network namespace, pinned (swarm backend)
UNITS = (PROVIDER_UNIT, GATEWAY_UNIT)  # the docker backend's, in start order: the gateway after the provider
ALL_UNITS = (PROVIDER_UNIT, NATS_UNIT, GATEWAY_UNIT)  # every template, in start order


def units_for(backend: Backend) -> tuple[str, ...]:
    """The units a backend installs, in start order."""
    return ALL_UNITS if backend is Backend.SWARM else UNITS


STATE_DIR_MODE = 0o755  # the hosts file in it is bind-mounted into every function container
SECRETS_DIR_MODE = 0o700
UNIT_FILE_MODE = 0o644

# systemd's StateDirectory= takes a path relative to this one.
_SYSTEMD_STATE_ROOT = Path("/var/lib")
# ProtectHome=yes hides these; an executable or state dir below them needs ProtectHome=read-only.
_HOME_ROOTS = (Path("/home"), Path("/root"), Path("/run/user"))
# PrivateTmp=yes gives the services a /tmp of their own.
_TMP_ROOTS = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108 (paths compared, never written)
# Characters that need no quoting or escaping in a unit file: no blanks, no %specifiers, no $variables.
_UNIT_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+@-]*$")
_TEMPLATE_DATA_DIR = Path("share") / "pyfaasd" / "systemd"


class InstallError(Exception):
    """The install cannot be planned or carried out; the message says what to change."""


# -- actions -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MakeDir:
    path: Path
    mode: int

    def describe(self) -> str:
        return f"create directory {self.path} (mode {self.mode:04o})"


@dataclass(frozen=True, slots=True)
class ChangeMode:
    path: Path
    mode: int

    def describe(self) -> str:
        return f"chmod {self.mode:04o} {self.path}"


@dataclass(frozen=True, slots=True)
class CreateCredentials:
    """Create the basic-auth files that are missing (random password, 0600); never overwrites."""

    directory: Path

    def describe(self) -> str:
        return f"create basic-auth credentials in {self.directory} (user {DEFAULT_USER}, random password, mode 0600)"


@dataclass(frozen=True, slots=True)
class WriteFile:
    path: Path
    content: str = field(repr=False)
    mode: int = UNIT_FILE_MODE
    replaces: bool = False  # an older version is there

    def describe(self) -> str:
        verb = "update" if self.replaces else "write"
        return f"{verb} {self.path} ({len(self.content.encode())} bytes, mode {self.mode:04o})"


@dataclass(frozen=True, slots=True)
class RemoveFile:
    path: Path

    def describe(self) -> str:
        return f"remove {self.path}"


@dataclass(frozen=True, slots=True)
class RemoveTree:
    path: Path

    def describe(self) -> str:
        return f"remove {self.path} and everything in it"


@dataclass(frozen=True, slots=True)
class RunCommand:
    argv: tuple[str, ...]

    def describe(self) -> str:
        return f"run: {shlex.join(self.argv)}"


@dataclass(frozen=True, slots=True)
class MergeDaemonJson:
    """Add registries to Docker's ``insecure-registries`` (pyfaasd/docker_daemon.py); asked before it is done."""

    path: Path
    content: str = field(repr=False)
    added: tuple[str, ...]
    diff: tuple[str, ...] = field(repr=False, default=())

    def describe(self) -> str:
        return f"add {', '.join(self.added)} to insecure-registries in {self.path} (other settings kept)"


@dataclass(frozen=True, slots=True)
class LinkCommand:
    """``/usr/local/bin/pyfaasd`` → the executable, so ``pyfaasd`` is on root's PATH (replacing an older link)."""

    path: Path
    target: Path

    def describe(self) -> str:
        return f"link {self.path} -> {self.target}"


Action = (
    LinkCommand
    | MakeDir
    | ChangeMode
    | CreateCredentials
    | WriteFile
    | RemoveFile
    | RemoveTree
    | RunCommand
    | MergeDaemonJson
)


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    notes: tuple[str, ...] = ()  # what is already as it should be, and warnings


# -- options and observation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstallOptions:
    executable: Path
    state_dir: Path = defaults.STATE_DIR
    unit_dir: Path = DEFAULT_UNIT_DIR
    env_file: Path = DEFAULT_ENV_FILE
    start: bool = True
    registries: Path = Path("/etc/pyfaasd/registries.yaml")
    daemon_json: Path = DAEMON_JSON
    assume_yes: bool = False  # change daemon.json without asking
    command_link: Path | None = None  # where to link the executable (on PATH); None: no link
    backend: Backend = Backend.DOCKER  # swarm: the units run in the anchor's network namespace (docs/swarm.md)


@dataclass(frozen=True, slots=True)
class UninstallOptions:
    state_dir: Path = defaults.STATE_DIR
    unit_dir: Path = DEFAULT_UNIT_DIR
    purge: bool = False
    command_link: Path | None = None  # removed when it is a link to a pyfaasd executable


@dataclass(frozen=True, slots=True)
class HostState:
    """What :func:`observe` found; the only input of the planners besides the options."""

    unit_files: Mapping[str, str | None]  # unit name -> current text (None: absent)
    dir_modes: Mapping[Path, int | None]  # state dir and secrets dir -> permission bits (None: absent)
    credential_files: frozenset[str]  # names of the basic-auth files present
    systemctl: str | None  # path of systemctl, if on PATH
    systemd_running: bool  # systemd is PID 1 (sd_booted: /run/systemd/system exists)
    daemon_json: str | None = None  # Docker's daemon.json as it is (None: absent)
    registries: RegistriesConfig = field(default_factory=RegistriesConfig)
    command_link: str | None = None  # the link's target as it is; "" a file that is no link; None absent

    @property
    def systemd_usable(self) -> bool:
        return self.systemctl is not None and self.systemd_running


def observe(
    state_dir: Path,
    unit_dir: Path,
    registries: Path | None = None,
    daemon_json: Path = DAEMON_JSON,
    command_link: Path | None = None,
) -> HostState:
    """Read (never change) the parts of the host the planners need."""
    units: dict[str, str | None] = {}
    for name in ALL_UNITS:
        try:
            units[name] = (unit_dir / name).read_text()
        except FileNotFoundError:
            units[name] = None
    modes: dict[Path, int | None] = {}
    for path in (state_dir, secrets_dir(state_dir)):
        try:
            modes[path] = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            modes[path] = None
    present = frozenset(name for name in (USER_FILE, PASSWORD_FILE) if (secrets_dir(state_dir) / name).exists())
    return HostState(
        unit_files=units,
        dir_modes=modes,
        credential_files=present,
        systemctl=shutil.which("systemctl"),
        systemd_running=Path("/run/systemd/system").is_dir(),
        daemon_json=daemon_json.read_text() if daemon_json.is_file() else None,
        registries=_registries(registries),
        command_link=_link_target(command_link),
    )


def _link_target(path: Path | None) -> str | None:
    if path is None or not (path.is_symlink() or path.exists()):
        return None
    return os.readlink(path) if path.is_symlink() else ""


def _registries(path: Path | None) -> RegistriesConfig:
    try:
        return RegistriesConfig.load(path)
    except RegistriesConfigError as e:
        raise InstallError(str(e)) from e


# -- templates -------------------------------------------------------------------------------------------


def template_dirs() -> tuple[Path, ...]:
    """Where the unit templates may be, in order: a source checkout (also an editable install), then the
    ``share/pyfaasd/systemd`` data directory a wheel installs (``[tool.setuptools.data-files]``)."""
    dirs = [Path(__file__).resolve().parent.parent / "systemd"]
    for scheme in (None, f"{os.name}_user"):
        try:
            data = sysconfig.get_path("data") if scheme is None else sysconfig.get_path("data", scheme)
        except KeyError:
            continue
        dirs.append(Path(data) / _TEMPLATE_DATA_DIR)
    return tuple(dict.fromkeys(dirs))


def load_templates(dirs: Sequence[Path] | None = None) -> dict[str, str]:
    """The text of every unit template, from the first directory that has them all."""
    searched = template_dirs() if dirs is None else tuple(dirs)
    for directory in searched:
        if all((directory / name).is_file() for name in ALL_UNITS):
            return {name: (directory / name).read_text() for name in ALL_UNITS}
    places = ", ".join(str(d) for d in searched)
    raise InstallError(f"the unit templates {', '.join(ALL_UNITS)} are not in any of: {places}")


def render_units(templates: Mapping[str, str], options: InstallOptions) -> dict[str, str]:
    """Fill the ``${...}`` placeholders of the templates of the backend's units (:func:`units_for`); InstallError on
    a path systemd cannot take as is."""
    for flag, path in (
        ("--pyfaasd", options.executable),
        ("--state-dir", options.state_dir),
        ("--env-file", options.env_file),
    ):
        if not _UNIT_SAFE_PATH.match(str(path)):
            raise InstallError(
                f"{flag}: {str(path)!r} must be an absolute path of letters, digits and . _ / + @ - only "
                "(systemd would read blanks, % and $ in a unit file as separators, specifiers and variables)"
            )
    if _below(options.executable, _TMP_ROOTS):
        raise InstallError(
            f"--pyfaasd: {options.executable} is below /tmp or /var/tmp, which the units replace with a private "
            "one (PrivateTmp=yes); install pyfaasd somewhere else, e.g. a virtualenv in /opt/pyfaasd"
        )
    if _below(options.state_dir, (_SYSTEMD_STATE_ROOT,)):
        relative = options.state_dir.relative_to(_SYSTEMD_STATE_ROOT)
        state_setting = f"StateDirectory={relative}\nStateDirectoryMode={STATE_DIR_MODE:04o}"
    else:
        state_setting = f"ReadWritePaths={options.state_dir}"
    near_home = any(_below(p, _HOME_ROOTS) for p in (options.executable, options.state_dir, options.env_file))
    values = {
        "pyfaasd": str(options.executable),
        "state_dir": str(options.state_dir),
        "env_file": str(options.env_file),
        "state_dir_setting": state_setting,
        "protect_home": "read-only" if near_home else "yes",
        "swarm_netns": str(SWARM_NETNS),
        **_backend_lines(options),
    }
    rendered = {}
    for name in units_for(options.backend):
        text = templates.get(name)
        if text is None:
            raise InstallError(f"the unit template {name} is missing")
        try:
            rendered[name] = Template(text).substitute(values)
        except (KeyError, ValueError) as e:
            raise InstallError(f"the template {name} has a placeholder install does not fill: {e}") from e
    return rendered


def _backend_lines(options: InstallOptions) -> dict[str, str]:
    """What differs between the backends' units. With ``swarm`` (docs/swarm.md): the provider unit first makes
    the swarm, overlay and anchor and pins the anchor's network namespace (ExecStartPre with full privileges, so
    the bind mount is in the host's mount namespace), then enters it; the gateway unit is started in it by
    systemd and listens on every address there, the anchor publishing its port; so is the NATS unit (its own
    template), which the gateway is ordered after."""
    if options.backend is not Backend.SWARM:
        note = "# PYFAASD_BACKEND=docker (pyfaasd install --backend swarm renders the swarm backend's lines here)"
        return {
            "provider_flags": "",
            "provider_backend": note,
            "gateway_flags": "",
            "gateway_backend": note,
            "gateway_unit_backend": note,
        }
    return {
        "provider_flags": f" --netns {SWARM_NETNS}",
        "provider_backend": (
            f"Environment=PYFAASD_BACKEND=swarm\nExecStartPre=+{options.executable} swarm-anchor --pin {SWARM_NETNS}"
        ),
        # the gateway lives in the namespace the provider unit pins: restarted (and stopped) with it
        "gateway_unit_backend": f"PartOf={PROVIDER_UNIT}\nWants={NATS_UNIT}\nAfter={NATS_UNIT}",
        "gateway_flags": " --in-anchor",
        "gateway_backend": f"Environment=PYFAASD_BACKEND=swarm\nNetworkNamespacePath={SWARM_NETNS}",
    }


def _below(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


# -- planning (pure) -----------------------------------------------------------------------------------------


def plan_install(options: InstallOptions, rendered: Mapping[str, str], host: HostState) -> Plan:
    """The actions that bring the host from ``host`` to an installed, enabled (and started) pyfaasd."""
    actions: list[Action] = []
    notes: list[str] = []
    for path, mode in ((options.state_dir, STATE_DIR_MODE), (secrets_dir(options.state_dir), SECRETS_DIR_MODE)):
        current = host.dir_modes.get(path)
        if current is None:
            actions.append(MakeDir(path, mode))
        elif current != mode:
            actions.append(ChangeMode(path, mode))
        else:
            notes.append(f"{path} exists")
    if host.credential_files >= {USER_FILE, PASSWORD_FILE}:
        notes.append(f"basic-auth credentials in {secrets_dir(options.state_dir)} exist (kept)")
    else:
        actions.append(CreateCredentials(secrets_dir(options.state_dir)))

    units = units_for(options.backend)
    changed: list[str] = []  # written units that were there before, so may be running with the old text
    written = False
    # a unit of the other backend (the NATS unit, installed with --backend swarm before) goes
    stale = [name for name in ALL_UNITS if name not in units and host.unit_files.get(name) is not None]
    systemctl = host.systemctl or "systemctl"
    if stale:
        actions.append(RunCommand((systemctl, "disable", "--now", *stale)))
        actions.extend(RemoveFile(options.unit_dir / name) for name in stale)
        written = True
    for name in units:
        text = host.unit_files.get(name)
        if text == rendered[name]:
            notes.append(f"{options.unit_dir / name} is up to date")
            continue
        actions.append(WriteFile(options.unit_dir / name, rendered[name], UNIT_FILE_MODE, replaces=text is not None))
        written = True
        if text is not None:
            changed.append(name)

    if written:
        actions.append(RunCommand((systemctl, "daemon-reload")))
    if changed and options.start:
        # Services running with the old unit pick the new one up; stopped ones stay stopped here and are
        # started by `enable --now` below.
        actions.append(RunCommand((systemctl, "try-restart", *changed)))
    enable = (systemctl, "enable", "--now", *units) if options.start else (systemctl, "enable", *units)
    actions.append(RunCommand(enable))
    actions += _plan_daemon_json(options, host, notes)
    actions += _plan_command_link(options, host, notes)
    if _below(options.state_dir, _TMP_ROOTS):
        notes.append(
            f"warning: the state dir {options.state_dir} is below /tmp or /var/tmp; the services get a private /tmp "
            "(PrivateTmp=yes) and will not find it"
        )
    return Plan(tuple(actions), tuple(notes))


def _plan_daemon_json(options: InstallOptions, host: HostState, notes: list[str]) -> list[Action]:
    """The plain-HTTP mirrors Docker must be told about, merged into daemon.json, then Docker reloaded."""
    needed = insecure_mirrors(host.registries)
    try:
        change = merged(host.daemon_json, needed)
    except DaemonJsonError as e:
        raise InstallError(str(e)) from e
    if change is None:
        if needed:
            notes.append(f"{options.daemon_json} lists the plain-HTTP mirrors already")
        return []
    content, added = change
    if host.systemd_usable:
        reload: tuple[str, ...] = (host.systemctl or "systemctl", "reload", "docker")
    else:
        reload = ("pkill", "-HUP", "-x", "dockerd")
    return [
        MergeDaemonJson(options.daemon_json, content, tuple(added), tuple(diff(host.daemon_json, content))),
        RunCommand(reload),  # Docker reads insecure-registries again on reload: no container stops
    ]


def _plan_command_link(options: InstallOptions, host: HostState, notes: list[str]) -> list[Action]:
    link = options.command_link
    if link is None:
        return []
    if host.command_link == str(options.executable):
        notes.append(f"{link} links to {options.executable}")
        return []
    if host.command_link == "":
        notes.append(f"warning: {link} is a file, not a link; kept (run {options.executable} by its path)")
        return []
    return [LinkCommand(link, options.executable)]


def plan_uninstall(options: UninstallOptions, host: HostState) -> Plan:
    """The actions that stop and remove the units (and with ``purge`` the state dir)."""
    actions: list[Action] = []
    notes: list[str] = []
    present = [name for name in ALL_UNITS if host.unit_files.get(name) is not None]
    systemctl = host.systemctl or "systemctl"
    if present:
        # The gateway first: it is ordered after the others.
        actions.append(RunCommand((systemctl, "disable", "--now", *reversed(present))))
        actions.extend(RemoveFile(options.unit_dir / name) for name in reversed(present))
        actions.append(RunCommand((systemctl, "daemon-reload")))
    else:
        notes.append(f"no pyfaasd unit files in {options.unit_dir}")
    link = options.command_link
    if link is not None and host.command_link and Path(host.command_link).name == "pyfaasd":
        actions.append(RemoveFile(link))
    state_present = host.dir_modes.get(options.state_dir) is not None
    if options.purge and state_present:
        actions.append(RemoveTree(options.state_dir))
    elif state_present:
        notes.append(f"kept {options.state_dir} (functions' data and credentials); --purge removes it")
    notes.append(
        "function containers are left to Docker; remove them with: "
        "docker ps -aq --filter label=com.pyfaasd.bridge | xargs -r docker rm -f"
    )
    notes.append("the bridge and its iptables rules stay until: python -m netconf down")
    return Plan(tuple(actions), tuple(notes))


# -- execution ---------------------------------------------------------------------------------------------

Runner = Callable[[Sequence[str]], int]


def run_command(argv: Sequence[str]) -> int:
    """Run a command with its output going to ours; the exit status."""
    return subprocess.run(list(argv), check=False).returncode


def execute(plan: Plan, runner: Runner = run_command, out: Callable[[str], None] = print) -> None:
    """Carry out the actions in order, printing each; InstallError names the one that failed."""
    for action in plan.actions:
        out(f"  {action.describe()}")
        try:
            _apply(action, runner)
        except OSError as e:
            hint = " (run as root)" if isinstance(e, PermissionError) else ""
            raise InstallError(f"{action.describe()} failed: {e.strerror or e}{hint}") from e


def _apply(action: Action, runner: Runner) -> None:
    match action:
        case LinkCommand(path, target):
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.pyfaasd-tmp")
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(target)
            temporary.replace(path)
        case MakeDir(path, mode):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)
        case ChangeMode(path, mode):
            path.chmod(mode)
        case CreateCredentials(directory):
            ensure_credentials(directory)
        case WriteFile(path, content, mode):
            _write_atomically(path, content, mode)
        case MergeDaemonJson(path, content):
            _write_atomically(path, content, 0o644)
        case RemoveFile(path):
            path.unlink(missing_ok=True)
        case RemoveTree(path):
            shutil.rmtree(path)
        case RunCommand(argv):
            code = runner(argv)
            if code != 0:
                raise InstallError(f"{shlex.join(argv)} exited with status {code}")


def _write_atomically(path: Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.pyfaasd-tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# -- the two commands ------------------------------------------------------------------------------------


def default_executable() -> Path | None:
    """The ``pyfaasd`` script beside this interpreter (a virtualenv's bin/), else the one on PATH."""
    sibling = Path(sys.executable).parent / "pyfaasd"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return sibling
    found = shutil.which("pyfaasd")
    return Path(found).resolve() if found else None


def login_hint(state_dir: Path) -> str:
    """How to log faas-cli in; it names the password file, never the password."""
    directory = secrets_dir(state_dir)
    try:
        user = (directory / USER_FILE).read_text().strip() or DEFAULT_USER
    except OSError:
        user = DEFAULT_USER
    password_file = shlex.quote(str(directory / PASSWORD_FILE))
    command = f"cat {password_file} | faas-cli login --username {shlex.quote(user)} --password-stdin"
    return f"Log in with faas-cli (the file is readable by root only; use sudo cat as another user):\n  {command}"


NO_SYSTEMD = (
    "systemd is not running on this machine (systemctl missing, or PID 1 is not systemd), so the units "
    "cannot be installed. Run pyfaasd in the foreground instead: pyfaasd up"
)


def install(
    options: InstallOptions,
    *,
    dry_run: bool = False,
    host: HostState | None = None,
    templates: Mapping[str, str] | None = None,
    runner: Runner = run_command,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] | None = None,
    confirm: Callable[[str], bool] | None = None,
) -> int:
    """Plan and (unless ``dry_run``) carry out the install; the exit status (2: bad options, 1: failed).
    ``host``, ``templates``, ``runner`` and ``confirm`` are for tests; ``out`` and ``err`` default to stdout
    and stderr."""
    err = err or _print_stderr
    try:
        rendered = render_units(load_templates() if templates is None else templates, options)
        if not (options.executable.is_file() and os.access(options.executable, os.X_OK)):
            raise InstallError(f"--pyfaasd: {options.executable} is not an executable file")
    except InstallError as e:
        err(f"pyfaasd install: {e}")
        return 2
    try:
        observed = (
            observe(options.state_dir, options.unit_dir, options.registries, options.daemon_json, options.command_link)
            if host is None
            else host
        )
        plan = plan_install(options, rendered, observed)
    except InstallError as e:
        err(f"pyfaasd install: {e}")
        return 2
    if dry_run:
        _print_plan(plan, "pyfaasd install --dry-run would:", out)
        for action in plan.actions:
            if isinstance(action, MergeDaemonJson):
                out("  the change to daemon.json:")
                for line in action.diff:
                    out(f"    {line}")
        if not observed.systemd_usable:
            out(f"note: {NO_SYSTEMD}")
        out(login_hint(options.state_dir))
        return 0
    if not observed.systemd_usable:
        err(f"pyfaasd install: {NO_SYSTEMD}")
        return 1
    plan = _confirm_daemon_json(plan, options, confirm or _ask, out)
    out("pyfaasd install:")
    try:
        execute(plan, runner, out)
    except InstallError as e:
        err(f"pyfaasd install: {e}")
        err("Fix the cause and run pyfaasd install again: it skips what is already done.")
        return 1
    for note in plan.notes:
        out(f"  ({note})")
    started = "enabled and started" if options.start else "enabled (not started: --no-start)"
    units = units_for(options.backend)
    out(f"pyfaasd is installed: {', '.join(units[:-1])} and {units[-1]} are {started}.")
    out(f"Logs: journalctl {' '.join(f'-u {name}' for name in units)} -f")
    out(login_hint(options.state_dir))
    return 0


def _ask(question: str) -> bool:
    """A yes/no question on the terminal; no terminal, no change."""
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _confirm_daemon_json(
    plan: Plan, options: InstallOptions, confirm: Callable[[str], bool], out: Callable[[str], None]
) -> Plan:
    """The plan, without the daemon.json change and its reload unless --yes or the answer is yes."""
    merge = next((a for a in plan.actions if isinstance(a, MergeDaemonJson)), None)
    if merge is None or options.assume_yes:
        return plan
    for line in merge.diff:
        out(f"  {line}")
    if confirm(f"Docker must be told these mirrors speak plain HTTP: {merge.describe()}?"):
        return plan
    index = plan.actions.index(merge)
    kept = plan.actions[:index] + plan.actions[index + 2 :]  # the merge and the Docker reload after it
    note = f"{merge.path} left as it is: the mirrors {', '.join(merge.added)} need it (pyfaasd install --yes)"
    return Plan(kept, (*plan.notes, note))


def uninstall(
    options: UninstallOptions,
    *,
    dry_run: bool = False,
    host: HostState | None = None,
    runner: Runner = run_command,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] | None = None,
) -> int:
    """Plan and (unless ``dry_run``) carry out the uninstall; the exit status (1: failed)."""
    err = err or _print_stderr
    observed = observe(options.state_dir, options.unit_dir, command_link=options.command_link) if host is None else host
    plan = plan_uninstall(options, observed)
    keeps_state = not options.purge and observed.dir_modes.get(options.state_dir) is not None
    if dry_run:
        _print_plan(plan, "pyfaasd uninstall --dry-run would:", out)
        if keeps_state:
            out(login_hint(options.state_dir))
        return 0
    if any(isinstance(a, RunCommand) for a in plan.actions) and not observed.systemd_usable:
        err(f"pyfaasd uninstall: {NO_SYSTEMD}")
        return 1
    out("pyfaasd uninstall:")
    try:
        execute(plan, runner, out)
    except InstallError as e:
        err(f"pyfaasd uninstall: {e}")
        return 1
    for note in plan.notes:
        out(f"  ({note})")
    out("pyfaasd is uninstalled.")
    if keeps_state:
        out("The state dir is kept; after a new pyfaasd install the same credentials work.")
        out(login_hint(options.state_dir))
    return 0


def _print_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _print_plan(plan: Plan, title: str, out: Callable[[str], None]) -> None:
    out(title)
    if not plan.actions:
        out("  nothing to do")
    for action in plan.actions:
        out(f"  {action.describe()}")
    for note in plan.notes:
        out(f"  ({note})")
