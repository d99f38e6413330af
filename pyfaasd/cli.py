"""The ``pyfaasd`` command line.

Subcommands grow with the project (``up``, ``provider``, ``gateway``, ``install`` come with their issues);
each is a function taking the parsed arguments and returning the process exit code.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pyfaasd.install import DEFAULT_COMMAND_LINK, DEFAULT_ENV_FILE
from servicekit.settings import STATE_DIR
from servicekit.swarm import Backend
from servicekit.version import __version__

if TYPE_CHECKING:
    from pyfaasd.gateway_client import Target


def _version(_args: argparse.Namespace) -> int:
    print(f"pyfaasd {__version__}")
    return 0


# -- install, uninstall, deploy (docs/install.md) -----------------------------------------------------------


def _state_dir_default() -> str:
    return os.environ.get(STATE_DIR.env) or STATE_DIR.default


def _install(args: argparse.Namespace) -> int:
    from pyfaasd import install

    executable = args.pyfaasd or install.default_executable()
    if executable is None:
        print("pyfaasd install: cannot find the pyfaasd executable; name it with --pyfaasd PATH")
        return 2
    options = install.InstallOptions(
        executable=Path(executable).absolute(),
        state_dir=Path(args.state_dir).absolute(),
        unit_dir=Path(args.unit_dir).absolute(),
        env_file=Path(args.env_file).absolute(),
        start=not args.no_start,
        registries=Path(args.registries),
        assume_yes=args.yes,
        command_link=None if args.no_link else Path(args.link).absolute(),
        backend=Backend(args.backend),
    )
    return install.install(options, dry_run=args.dry_run)


def _uninstall(args: argparse.Namespace) -> int:
    from pyfaasd import install

    options = install.UninstallOptions(
        state_dir=Path(args.state_dir).absolute(),
        unit_dir=Path(args.unit_dir).absolute(),
        purge=args.purge,
        command_link=Path(args.link).absolute(),
    )
    return install.uninstall(options, dry_run=args.dry_run)


def _deploy(args: argparse.Namespace) -> int:
    from pyfaasd import stack

    if args.path is not None:
        if not args.name:
            print("pyfaasd deploy: --name is required when deploying a PATH", file=sys.stderr)
            return 2
        try:
            annotations = _annotations(args)
        except stack.StackError as e:
            print(f"pyfaasd deploy: {e}", file=sys.stderr)
            return 2
        return stack.deploy_path_command(
            path=Path(args.path),
            name=args.name,
            runtime=args.runtime,
            namespace=args.namespace,
            env=args.env,
            secrets=args.secret,
            labels=args.label,
            annotations=annotations,
            gateway=args.gateway,
            username=args.username,
            password_file=Path(args.password_file) if args.password_file else None,
            state_dir=Path(args.state_dir),
        )
    return stack.deploy_command(
        stack_file=Path(args.file),
        filters=args.filter,
        gateway=args.gateway,
        username=args.username,
        password_file=Path(args.password_file) if args.password_file else None,
        state_dir=Path(args.state_dir),
    )


def _add_install_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        default=_state_dir_default(),
        help=f"state dir (default: ${STATE_DIR.env} or {STATE_DIR.default})",
    )
    common.add_argument(
        "--unit-dir", default="/etc/systemd/system", help="where the unit files go (default: /etc/systemd/system)"
    )
    common.add_argument("--dry-run", action="store_true", help="print every action and change nothing")

    install = commands.add_parser(
        "install", parents=[common], help="install, enable and start the systemd units (pyfaasd-provider, pyfaasd)"
    )
    install.add_argument(
        "--env-file", default=str(DEFAULT_ENV_FILE), help="optional PYFAASD_* settings file the units read"
    )
    install.add_argument("--pyfaasd", metavar="PATH", help="the pyfaasd executable the units run (default: this one)")
    install.add_argument(
        "--link",
        default=str(DEFAULT_COMMAND_LINK),
        help=f"link this path to the executable, so pyfaasd is on PATH (default: {DEFAULT_COMMAND_LINK})",
    )
    install.add_argument("--no-link", action="store_true", help="make no such link")
    install.add_argument("--no-start", action="store_true", help="write and enable the units, but do not start them")
    install.add_argument(
        "--backend",
        choices=[b.value for b in Backend],
        default=Backend.DOCKER.value,
        help="what runs functions: docker (this host's bridge) or swarm (Swarm services; docs/swarm.md)",
    )
    install.add_argument(
        "--registries",
        default=os.environ.get("PYFAASD_REGISTRIES") or "/etc/pyfaasd/registries.yaml",
        help="registries.yaml, whose plain-HTTP mirrors Docker must list as insecure",
    )
    install.add_argument(
        "--yes", action="store_true", help="change /etc/docker/daemon.json for those mirrors without asking"
    )
    install.set_defaults(run=_install)

    uninstall = commands.add_parser("uninstall", parents=[common], help="stop, disable and remove the systemd units")
    uninstall.add_argument("--purge", action="store_true", help="also remove the state dir (credentials, secrets)")
    uninstall.add_argument(
        "--link",
        default=str(DEFAULT_COMMAND_LINK),
        help=f"remove this link to pyfaasd too, if it is one (default: {DEFAULT_COMMAND_LINK})",
    )
    uninstall.set_defaults(run=_uninstall)

    deploy = commands.add_parser(
        "deploy",
        help="deploy code (a .py, a folder or an archive) onto a runtime, or the functions of a faas-cli stack.yml",
    )
    deploy.add_argument(
        "path", nargs="?", help="a handler .py, a folder or a .zip/.tar.gz to deploy as a code function (no build)"
    )
    deploy.add_argument("--name", help="the function's name (with PATH)")
    _add_function_options(deploy, " (with PATH)")
    deploy.add_argument("-f", "--yaml", dest="file", default="stack.yml", help="the stack file (default: stack.yml)")
    deploy.add_argument(
        "--filter", action="append", metavar="NAME", help="deploy only functions matching NAME (wildcards; repeatable)"
    )
    _add_gateway_options(deploy, "the stack's provider.gateway, else ")
    deploy.set_defaults(run=_deploy)

    dev = commands.add_parser(
        "dev", help="serve a function from a live folder, reloaded on every edit; Ctrl-C removes it"
    )
    dev.add_argument("directory", help="the function's folder (handler.py, requirements.txt)")
    dev.add_argument("--name", required=True, help="the function's name")
    _add_function_options(dev)
    _add_gateway_options(dev)
    dev.set_defaults(run=_dev)

    code = commands.add_parser("code", help="the stored code bundles: ls, rm DIGEST..., prune")
    code_commands = code.add_subparsers(dest="code_command", required=True, metavar="ACTION")
    for action, text in (
        ("ls", "list the code bundles and the functions using them"),
        ("rm", "remove code bundles no function uses"),
        ("prune", "remove the dependency sets no function uses"),
    ):
        parser = code_commands.add_parser(action, help=text)
        if action == "rm":
            parser.add_argument("digests", nargs="+", metavar="DIGEST", help="sha256:<hex> as `code ls` shows it")
        _add_gateway_options(parser)
        parser.set_defaults(run=_code)

    volume = commands.add_parser("volume", help="the volumes functions mount: create NAME, ls, rm NAME...")
    volume_commands = volume.add_subparsers(dest="volume_command", required=True, metavar="ACTION")
    create = volume_commands.add_parser("create", help="create a named volume, a host path or an NFS share")
    create.add_argument("name", help="the volume's name (mount it with com.pyfaasd.volume.NAME=/path[:ro])")
    create.add_argument("--host-path", help="bind this host directory (under PYFAASD_VOLUME_HOST_ROOTS)")
    create.add_argument("--nfs-server", help="an NFS server's host name or address")
    create.add_argument("--nfs-path", help="the exported path on the NFS server")
    create.add_argument("--nfs-options", default="", help="mount options, e.g. nfsvers=4,hard")
    _add_gateway_options(create)
    create.set_defaults(run=_volume)
    listing_volumes = volume_commands.add_parser("ls", help="list the volumes and the functions using them")
    _add_gateway_options(listing_volumes)
    listing_volumes.set_defaults(run=_volume)
    remove = volume_commands.add_parser("rm", help="remove volumes no function uses (their data with them)")
    remove.add_argument("names", nargs="+", metavar="NAME")
    _add_gateway_options(remove)
    remove.set_defaults(run=_volume)

    image = commands.add_parser("image", help="images through the registry mirrors: pull REF, refresh [FUNCTION...]")
    image_commands = image.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    pull = image_commands.add_parser("pull", help="pull an image through the mirrors of registries.yaml")
    pull.add_argument("image", help="the image reference, as a function names it")
    _add_gateway_options(pull)
    pull.set_defaults(run=_image)
    refresh = image_commands.add_parser("refresh", help="pull again and roll the functions whose image changed")
    refresh.add_argument("functions", nargs="*", metavar="FUNCTION", help="name or name.namespace (default: all)")
    _add_gateway_options(refresh)
    refresh.set_defaults(run=_image)

    runtime = commands.add_parser("runtime", help="the runtime library: ls, build NAME DIR")
    runtime_commands = runtime.add_subparsers(dest="runtime_command", required=True, metavar="ACTION")
    listing = runtime_commands.add_parser("ls", help="list the runtimes code functions can run on")
    _add_gateway_options(listing)
    listing.set_defaults(run=_runtime)
    build = runtime_commands.add_parser("build", help="build a runtime image from a Dockerfile on this host")
    build.add_argument("name", help="the runtime's name, as --runtime of pyfaasd deploy takes it")
    build.add_argument("directory", help="the build context, with its Dockerfile")
    build.add_argument("--tag", help="the image's tag (default: pyfaasd/runtime-NAME:latest)")
    build.add_argument("--mode", default="python", help="the watchdog mode its code runs in (default: python)")
    build.set_defaults(run=_runtime)


def _add_function_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """list, invoke, logs, remove, secret: what faas-cli does to deployed functions, with the state dir's login."""
    listing = commands.add_parser("list", aliases=["ls"], help="list the functions: status, replicas, invocations")
    listing.add_argument("-v", "--verbose", action="store_true", help="also show each function's URL")
    listing.add_argument("-n", "--namespace", default="", help="the namespace (default: openfaas-fn)")
    _add_gateway_options(listing)
    listing.set_defaults(run=_functions)

    invoke = commands.add_parser("invoke", help="call a function with stdin as the body; its answer on stdout")
    invoke.add_argument("name", help="the function, name or name.namespace")
    invoke.add_argument("--method", default="POST", type=str.upper, help="the HTTP method (default: POST)")
    invoke.add_argument("--content-type", default="text/plain", help="the body's Content-Type (default: text/plain)")
    invoke.add_argument("-H", "--header", action="append", metavar="NAME=VALUE", help="a request header")
    invoke.add_argument("--path", default="", help="a path under the function, e.g. /items/1")
    invoke.add_argument("--query", action="append", metavar="K=V", help="a query parameter")
    _add_gateway_options(invoke)
    invoke.set_defaults(run=_functions)

    logs = commands.add_parser("logs", help="a function's log lines; -f follows them")
    logs.add_argument("name", help="the function's name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.add_argument("--tail", type=int, help="only the last N lines of each replica")
    logs.add_argument("--since", default="", help="only lines newer than this (RFC 3339 or a duration like 10m)")
    logs.add_argument("-n", "--namespace", default="", help="the namespace (default: openfaas-fn)")
    _add_gateway_options(logs)
    logs.set_defaults(run=_functions)

    remove = commands.add_parser("remove", aliases=["rm", "delete"], help="remove functions and their replicas")
    remove.add_argument("names", nargs="+", metavar="NAME")
    remove.add_argument("-n", "--namespace", default="", help="the namespace (default: openfaas-fn)")
    _add_gateway_options(remove)
    remove.set_defaults(run=_functions)

    secret = commands.add_parser("secret", help="the secrets functions mount: create NAME, ls, rm NAME...")
    secret_commands = secret.add_subparsers(dest="secret_command", required=True, metavar="ACTION")
    create = secret_commands.add_parser("create", help="create a secret from --from-literal, --from-file or stdin")
    create.add_argument("name")
    source = create.add_mutually_exclusive_group()
    source.add_argument("--from-literal", metavar="VALUE", help="the value itself")
    source.add_argument("--from-file", metavar="PATH", help="a file holding the value")
    for parser in (create, secret_commands.add_parser("ls", help="list the secrets")):
        parser.add_argument("-n", "--namespace", default="", help="the namespace (default: openfaas-fn)")
        _add_gateway_options(parser)
        parser.set_defaults(run=_secret)
    removing = secret_commands.add_parser("rm", help="remove secrets no function mounts")
    removing.add_argument("names", nargs="+", metavar="NAME")
    removing.add_argument("-n", "--namespace", default="", help="the namespace (default: openfaas-fn)")
    _add_gateway_options(removing)
    removing.set_defaults(run=_secret)


def _add_function_options(parser: argparse.ArgumentParser, when: str = "") -> None:
    """What a code function is deployed with, for `deploy PATH` and `dev`."""
    parser.add_argument("--runtime", default="python3.11", help=f"the runtime to run on{when} (default: python3.11)")
    parser.add_argument("--namespace", default="", help=f"the function's namespace{when} (default: openfaas-fn)")
    parser.add_argument("--env", action="append", metavar="K=V", help=f"an environment variable{when}")
    parser.add_argument("--secret", action="append", metavar="NAME", help=f"a secret to mount{when}")
    parser.add_argument("--label", action="append", metavar="K=V", help=f"a label{when}")
    parser.add_argument("--annotation", action="append", metavar="K=V", help=f"an annotation{when}")
    parser.add_argument(
        "--volume", action="append", metavar="NAME=/PATH[:ro]", help=f"mount a volume (an annotation){when}"
    )


def _annotations(args: argparse.Namespace) -> list[str]:
    """--annotation K=V and --volume NAME=/PATH as the deployment's K=V annotations; StackError names a bad one."""
    from pyfaasd import stack

    volumes = stack.parse_pairs(args.volume, "--volume")
    return [*(args.annotation or []), *(f"com.pyfaasd.volume.{name}={path}" for name, path in volumes.items())]


def _add_gateway_options(parser: argparse.ArgumentParser, first_default: str = "") -> None:
    parser.add_argument(
        "-g",
        "--gateway",
        help=f"gateway URL (default: {first_default}$OPENFAAS_URL, else http://127.0.0.1:8080)",
    )
    parser.add_argument("-u", "--username", help="basic-auth user (default: the state dir's credentials)")
    parser.add_argument("--password-file", metavar="PATH", help="file holding the basic-auth password")
    parser.add_argument(
        "--state-dir", default=_state_dir_default(), help="where the default credentials are (<state>/secrets)"
    )


def _target(args: argparse.Namespace) -> Target | None:
    """The gateway and credentials of a code or runtime command; None (with the reason said) if unusable."""
    from pyfaasd import stack
    from pyfaasd.gateway_client import Target

    try:
        credentials, _hint = stack.resolve_credentials(
            args.username, Path(args.password_file) if args.password_file else None, Path(args.state_dir)
        )
    except stack.StackError as e:
        _print_err(f"pyfaasd: {e}")
        return None
    return Target(stack.gateway_url(args.gateway, "", os.environ), credentials)


def _dev(args: argparse.Namespace) -> int:
    from pyfaasd import stack
    from pyfaasd.dev import DevFunction, run_dev

    target = _target(args)
    if target is None:
        return 2
    try:
        fn = DevFunction(
            directory=Path(args.directory).resolve(),
            name=args.name,
            runtime=args.runtime,
            namespace=args.namespace,
            environment=stack.parse_pairs(args.env, "--env"),
            secrets=tuple(args.secret or ()),
            labels=stack.parse_pairs(args.label, "--label"),
            annotations=stack.parse_pairs(_annotations(args), "--annotation"),
        )
    except stack.StackError as e:
        _print_err(f"pyfaasd dev: {e}")
        return 2
    return run_dev(fn, target.gateway, target.credentials, lambda line: print(line, flush=True), _print_err)


def _code(args: argparse.Namespace) -> int:
    from pyfaasd import code_commands

    err = _print_err
    target = _target(args)
    if target is None:
        return 2
    if args.code_command == "ls":
        return code_commands.code_ls(target, print, err)
    if args.code_command == "rm":
        return code_commands.code_rm(target, args.digests, print, err)
    return code_commands.code_prune(target, print, err)


def _volume(args: argparse.Namespace) -> int:
    from pyfaasd import volume_commands

    target = _target(args)
    if target is None:
        return 2
    if args.volume_command == "create":
        return volume_commands.volume_create(
            target,
            args.name,
            host_path=args.host_path,
            nfs_server=args.nfs_server,
            nfs_path=args.nfs_path,
            nfs_options=args.nfs_options,
            out=print,
            err=_print_err,
        )
    if args.volume_command == "ls":
        return volume_commands.volume_ls(target, print, _print_err)
    return volume_commands.volume_rm(target, args.names, print, _print_err)


def _functions(args: argparse.Namespace) -> int:
    from pyfaasd import function_commands, stack

    target = _target(args)
    if target is None:
        return 2
    if args.command in ("list", "ls"):
        return function_commands.list_functions(target, args.namespace, args.verbose, print, _print_err)
    if args.command == "logs":
        return function_commands.logs(
            target, args.name, args.namespace, args.follow, args.tail, args.since, _print_flushed, _print_err
        )
    if args.command in ("remove", "rm", "delete"):
        return function_commands.remove(target, args.names, args.namespace, print, _print_err)
    try:
        headers = {"Content-Type": args.content_type, **stack.parse_pairs(args.header, "--header")}
        query = stack.parse_pairs(args.query, "--query")
    except stack.StackError as e:
        _print_err(f"pyfaasd invoke: {e}")
        return 2
    body = b"" if args.method in ("GET", "HEAD") or sys.stdin.isatty() else sys.stdin.buffer.read()
    call = function_commands.Invocation(
        args.name, args.method, body, headers, args.path, urllib.parse.urlencode(query) if query else ""
    )
    return function_commands.invoke(target, call, _write_bytes, _print_err)


def _secret(args: argparse.Namespace) -> int:
    from pyfaasd import secret_commands

    target = _target(args)
    if target is None:
        return 2
    action: str = args.secret_command
    if action == "ls":
        return secret_commands.secret_ls(target, args.namespace, print, _print_err)
    if action == "rm":
        return secret_commands.secret_rm(target, args.names, args.namespace, print, _print_err)
    if args.from_literal is not None:
        value = args.from_literal
    elif args.from_file is not None:
        try:
            value = Path(args.from_file).read_text()
        except OSError as e:
            _print_err(f"pyfaasd secret create: cannot read {args.from_file}: {e.strerror}")
            return 2
    elif sys.stdin.isatty():
        _print_err("pyfaasd secret create: give the value with --from-literal, --from-file or on stdin")
        return 2
    else:
        value = sys.stdin.read()
    return secret_commands.secret_create(target, args.name, value, args.namespace, print, _print_err)


def _print_flushed(line: str) -> None:
    print(line, flush=True)


def _write_bytes(data: bytes) -> None:
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _write_out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _image(args: argparse.Namespace) -> int:
    from pyfaasd import image_commands

    target = _target(args)
    if target is None:
        return 2
    if args.image_command == "pull":
        return image_commands.image_pull(target, args.image, print, _print_err)
    return image_commands.image_refresh(target, args.functions, print, _print_err)


def _runtime(args: argparse.Namespace) -> int:
    from pyfaasd import code_commands

    if args.runtime_command == "build":
        return code_commands.runtime_build(args.name, Path(args.directory), args.tag, args.mode, print, _print_err)
    target = _target(args)
    return 2 if target is None else code_commands.runtime_ls(target, print, _print_err)


def _print_err(line: str) -> None:
    print(line, file=sys.stderr)


# -- the daemons (docs/provider.md, docs/gateway.md) ----------------------------------------------------------


def _provider(args: argparse.Namespace) -> int:
    from provider.__main__ import run

    if args.netns is None:
        return run(args)
    # The swarm backend's systemd unit: the anchor's namespace, pinned by swarm-anchor. If the anchor goes, the
    # provider stops with status 1, so systemd restarts it and swarm-anchor makes a new one (the gateway unit is
    # PartOf this one).
    import signal
    import threading

    from pyfaasd.swarm_stack import SwarmStackError, enter_network_namespace_at, follow_anchor, pinned_anchor_pid

    pin = Path(args.netns)
    try:
        enter_network_namespace_at(pin)
    except SwarmStackError as e:
        print(f"pyfaasd provider: {e}", file=sys.stderr)
        return 1
    gone = threading.Event()
    pid = pinned_anchor_pid(pin)
    if pid is not None:

        def anchor_gone() -> None:
            print(f"pyfaasd provider: the anchor (pid {pid}) is gone; stopping", file=sys.stderr)
            gone.set()
            os.kill(os.getpid(), signal.SIGTERM)

        follow_anchor(pid, anchor_gone)
    status = run(args)
    return 1 if gone.is_set() else status


def _gateway(args: argparse.Namespace) -> int:
    from gateway.__main__ import run

    if args.in_anchor:
        # The anchor publishes PYFAASD_GATEWAY_ADDR (and PYFAASD_TLS_ADDR) on the host; inside its namespace the
        # gateway takes the same ports on every address.
        from gateway.config import ADDR, TLS_ADDR
        from servicekit.settings import SettingError, with_flags

        env = with_flags(os.environ, args, (ADDR, TLS_ADDR))
        try:
            _host, port = ADDR.read(env)
            _tls_host, tls_port = TLS_ADDR.read(env)
        except SettingError as e:
            print(f"pyfaasd gateway: configuration error: {e}", file=sys.stderr)
            return 2
        setattr(args, ADDR.env, f"0.0.0.0:{port}")
        setattr(args, TLS_ADDR.env, f"0.0.0.0:{tls_port}")
    return run(args)


def _swarm_anchor(args: argparse.Namespace) -> int:
    """The swarm, the overlay and the anchor, its namespace pinned at ``--pin`` (the pyfaasd-provider unit's
    ExecStartPre with the swarm backend)."""
    import asyncio

    from gateway.config import GatewayConfig
    from provider.config import ProviderConfig
    from pyfaasd import swarm_stack
    from servicekit.settings import SettingError

    try:
        provider = ProviderConfig.from_env(os.environ)
        gateway = GatewayConfig.from_env(os.environ)
        advertise_addr = swarm_stack.ADVERTISE_ADDR.read(os.environ)
    except SettingError as e:
        print(f"pyfaasd swarm-anchor: configuration error: {e}", file=sys.stderr)
        return 2
    tls = (gateway.tls_host, gateway.tls_port) if gateway.tls else None
    ports = swarm_stack.gateway_ports(gateway.host, gateway.port, tls)
    try:
        ready = asyncio.run(swarm_stack.prepare(provider.swarm_network, advertise_addr, ports))
        swarm_stack.bind_network_namespace(ready.anchor.pid, Path(args.pin))
    except swarm_stack.SwarmStackError as e:
        print(f"pyfaasd swarm-anchor: {e}", file=sys.stderr)
        return 1
    made = " (made this engine a swarm manager)" if ready.made_swarm else ""
    print(f"pyfaasd swarm-anchor: {ready.anchor.name} on {provider.swarm_network}, pinned at {args.pin}{made}")
    return 0


def _nats_server(args: argparse.Namespace) -> int:
    """The swarm backend's pyfaasd-nats unit (in the anchor's namespace, NetworkNamespacePath=): nats-server with
    the stack's JetStream configuration in the state dir, as ``up --backend swarm`` runs it; exec'd, so systemd
    sees and stops nats-server itself."""
    from gateway.config import NATS_URL
    from pyfaasd import nats_server
    from servicekit.settings import SettingError, with_flags

    env = with_flags(os.environ, args, (STATE_DIR, NATS_URL))
    try:
        state_dir, url = STATE_DIR.read(env), NATS_URL.read(env)
        argv = nats_server.command(state_dir, url)
    except SettingError as e:
        print(f"pyfaasd nats-server: configuration error: {e}", file=sys.stderr)
        return 2
    except (nats_server.NatsServerError, OSError) as e:
        print(f"pyfaasd nats-server: {e}", file=sys.stderr)
        return 1
    if argv is None:
        print(f"pyfaasd nats-server: {NATS_URL.env}={url} is a server you run; nothing to start", file=sys.stderr)
        return 0
    print(f"pyfaasd nats-server: {shlex.join(argv)} (JetStream store in {state_dir / 'nats' / 'store'})", flush=True)
    os.execv(argv[0], argv)  # noqa: S606 (nats-server, found on PATH by nats_server.command)


def _up(args: argparse.Namespace) -> int:
    from pyfaasd.up import run

    return run(args)


def _status(args: argparse.Namespace) -> int:
    from pyfaasd.status import run

    return run(args)


def _routes(args: argparse.Namespace) -> int:
    from pyfaasd.routes_command import run

    return run(args)


def _add_daemon_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from gateway.__main__ import add_arguments as add_gateway_arguments
    from provider.__main__ import add_arguments as add_provider_arguments
    from pyfaasd.up import add_arguments as add_up_arguments

    up = commands.add_parser("up", help="run provider and gateway in one process, in the foreground")
    add_up_arguments(up)
    up.set_defaults(run=_up)
    provider = commands.add_parser("provider", help="run the provider (faas-provider API over Docker)")
    add_provider_arguments(provider)
    provider.add_argument(
        "--netns", metavar="PATH", help="run in this network namespace (the swarm backend's anchor, docs/swarm.md)"
    )
    provider.set_defaults(run=_provider)
    gateway = commands.add_parser("gateway", help="run the gateway (public API and /function proxy)")
    add_gateway_arguments(gateway)
    gateway.add_argument(
        "--in-anchor",
        action="store_true",
        help="listen on 0.0.0.0 at the configured ports: the swarm backend's anchor publishes them (docs/swarm.md)",
    )
    gateway.set_defaults(run=_gateway)
    anchor = commands.add_parser(
        "swarm-anchor", help="swarm backend: make the swarm, overlay and anchor; pin the anchor's network namespace"
    )
    anchor.add_argument("--pin", metavar="PATH", required=True, help="where to pin the namespace (a bind mount)")
    anchor.set_defaults(run=_swarm_anchor)
    from gateway.config import NATS_URL
    from servicekit.settings import add_flags

    nats = commands.add_parser(
        "nats-server", help="swarm backend: run nats-server (JetStream, the async queue) with the stack's configuration"
    )
    add_flags(nats, (STATE_DIR, NATS_URL))
    nats.set_defaults(run=_nats_server)
    from pyfaasd.status import add_arguments as add_status_arguments

    status = commands.add_parser("status", help="show the bridge, the daemons and the functions")
    add_status_arguments(status)
    status.set_defaults(run=_status)
    from pyfaasd.routes_command import add_arguments as add_routes_arguments

    routes = commands.add_parser("routes", help="list the functions at their own domain or path, with their URLs")
    add_routes_arguments(routes)
    routes.set_defaults(run=_routes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyfaasd", description="single-host serverless platform")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    version = commands.add_parser("version", help="print the version")
    version.set_defaults(run=_version)
    _add_daemon_commands(commands)
    _add_install_commands(commands)
    _add_function_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except BrokenPipeError:
        # The reader went away (`pyfaasd logs -f | head`): stop quietly, as other Unix tools do. stdout is pointed
        # at /dev/null so that the interpreter's own flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by it


if __name__ == "__main__":
    sys.exit(main())
