"""Running netconf's firewall commands (``iptables``, ``nft``): bounded in time, failures as netconf errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from netconf.errors import NetconfError

COMMAND_TIMEOUT_S = 30.0


async def execute(
    argv: Sequence[str], error: type[NetconfError], missing: str, stdin: str | None = None
) -> tuple[int, str, str]:
    """Run ``argv`` (feeding it ``stdin``); its exit status, stdout and stderr. ``error`` is raised when it cannot
    be started (``missing`` says what it is needed for and how to get it) or does not finish in time."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as e:
        raise error(f"{argv[0]} is not installed (or not on PATH): {missing}") from e
    except PermissionError as e:
        raise error(f"cannot run {argv[0]}: {e.strerror}") from e
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except TimeoutError as e:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise error(f"{' '.join(argv)} did not finish within {COMMAND_TIMEOUT_S:.0f} s") from e
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
