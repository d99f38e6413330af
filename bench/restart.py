"""How soon ``pyfaasd up`` serves functions again after a ``kill -9``, with dozens of functions, JSON out.

One stack (``pyfaasd up``) with ``--functions`` functions (the hello image, one replica each) on its own bridge.
Each round kills the stack with SIGKILL (the containers keep running), starts it again and measures, from the
``exec`` of the new process:

- ``first_200``: until ``/function/<one of them>`` answers 200 through the gateway;
- ``all_200``: until every function has answered 200 once (asked in turn, each until it answers);
- ``api_ready``: until ``/healthz`` is 200 (the provider has re-read Docker: its /system API answers);
- ``baseline_python_start``: until a bare ``python -c 'import aiohttp'`` process exits, the floor of any Python
  server's start on this machine, measured in the same rounds.

Medians (and p90) of ``--rounds``; ratios against the baseline. Target: ``first_200`` under 1 s (issue 20,
point 9; 1.7 s before the gateway started ahead of the provider's recovery).

Run as root: ``.venv/bin/python bench/restart.py [--functions 30] [--rounds 5]``. It removes what it made.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ comes first on sys.path, and bench/netconf.py would shadow the netconf package.
if Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
sys.path.insert(0, str(ROOT))

from tests.provider_harness import ProviderProcess, http  # noqa: E402

IMAGE = "pyfaasd/fn-hello-python:latest"


def answers(url: str) -> bool:
    try:
        return http("GET", url, timeout=2).status == 200
    except OSError:
        return False


def until(predicate: object, timeout: float = 60.0) -> float:
    """Poll ``predicate`` every 5 ms; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(0.005)
    raise RuntimeError(f"not within {timeout}s")


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[max(0, int(len(ordered) * 0.9) - 1)] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def restart_round(stack: ProviderProcess, names: list[str]) -> dict[str, float]:
    assert stack.proc is not None
    stack.proc.send_signal(signal.SIGKILL)
    stack.proc.wait(10)
    stack.proc = None
    started = time.monotonic()
    stack.launch()
    first = until(lambda: answers(f"{stack.url}/function/{names[0]}"))
    pending = list(names[1:])

    def all_answered() -> bool:
        while pending and answers(f"{stack.url}/function/{pending[0]}"):
            pending.pop(0)
        return not pending

    everyone = until(all_answered)
    api = until(lambda: answers(f"{stack.url}/healthz"))
    return {"first_200": first - started, "all_200": everyone - started, "api_ready": api - started}


def python_start() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import aiohttp"], check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyfaasd-bench-") as tmp:
        stack = ProviderProcess.stack(Path(tmp) / "state", extra_env={"PYFAASD_LOG_LEVEL": "warning"})
        try:
            stack.start(timeout=60)
            names = [f"r{secrets.token_hex(2)}{i}" for i in range(args.functions)]
            for name in names:
                reply = stack.call("POST", "/system/functions", {"service": name, "image": IMAGE})
                assert reply.status == 202, reply.text
            until(lambda: all(answers(f"{stack.url}/function/{n}") for n in names), timeout=300)
            rounds = [restart_round(stack, names) for _ in range(args.rounds)]
            baseline = [python_start() for _ in range(args.rounds)]
        finally:
            stack.cleanup()
    result: dict[str, object] = {
        "functions": args.functions,
        "rounds": args.rounds,
        "baseline_python_start": summary(baseline),
    }
    base = statistics.median(baseline)
    for key in ("first_200", "all_200", "api_ready"):
        samples = [r[key] for r in rounds]
        result[key] = {**summary(samples), "ratio_to_baseline": round(statistics.median(samples) / base, 2)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
