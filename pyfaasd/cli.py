"""The ``pyfaasd`` command line.

Subcommands grow with the project (``up``, ``provider``, ``gateway``, ``install`` come with their issues);
each is a function taking the parsed arguments and returning the process exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pyfaasd import __version__


def _version(_args: argparse.Namespace) -> int:
    print(f"pyfaasd {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyfaasd", description="single-host serverless platform")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    version = commands.add_parser("version", help="print the version")
    version.set_defaults(run=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
