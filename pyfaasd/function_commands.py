"""``pyfaasd list``, ``invoke NAME``, ``logs NAME [-f]``, ``remove NAME``: one function at a time through the
gateway, as faas-cli's commands of the same names do (same routes, same default gateway and credentials)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode

from pyfaasd.gateway_client import Out, StatusError, Target, failed, ndjson, send, table

CODE_ANNOTATION: Final = "com.pyfaasd.code"
DEFAULT_NAMESPACE: Final = "openfaas-fn"
INVOKE_TIMEOUT_S: Final = 300.0


def _namespace_suffix(namespace: str) -> str:
    return f".{namespace}" if namespace and namespace != DEFAULT_NAMESPACE else ""


def list_functions(target: Target, namespace: str, verbose: bool, out: Out, err: Out) -> int:
    query = f"?{urlencode({'namespace': namespace})}" if namespace else ""
    reply = send("GET", f"{target.gateway}/system/functions{query}", target.credentials)
    if reply.status != 200:
        return failed("cannot list the functions", reply, err)
    functions = sorted(reply.json(), key=lambda f: str(f.get("name", "")))
    heading = ("NAME", "STATUS", "REPLICAS", "INVOCATIONS", "IMAGE OR CODE")
    rows: list[tuple[str, ...]] = [(*heading, "URL") if verbose else heading]
    for fn in functions:
        ready, wanted = int(fn.get("availableReplicas") or 0), int(fn.get("replicas") or 0)
        status = "Ready" if ready else ("Scaled to zero" if wanted == 0 else "Not ready")
        source = (fn.get("annotations") or {}).get(CODE_ANNOTATION) or fn.get("image", "")
        row = (fn["name"], status, f"{ready}/{wanted}", str(fn.get("invocationCount", 0)), str(source))
        url = f"{target.gateway}/function/{fn['name']}{_namespace_suffix(fn.get('namespace', ''))}"
        rows.append((*row, url) if verbose else row)
    table(rows, out)
    return 0


@dataclass(frozen=True, slots=True)
class Invocation:
    name: str
    method: str
    body: bytes
    headers: Mapping[str, str]
    path: str = ""
    query: str = ""


def invoke(target: Target, call: Invocation, write: Callable[[bytes], object], err: Out) -> int:
    """The function's answer body, byte for byte, to ``write``; a status of 400 or more is reported, exit 1."""
    path = "/" + call.path.lstrip("/") if call.path else ""
    url = f"{target.gateway}/function/{quote(call.name)}{path}{'?' + call.query if call.query else ''}"
    body = call.body if call.method not in ("GET", "HEAD") else None
    # Functions take no credentials: only the function's own answer comes back.
    reply = send(call.method, url, None, data=body, headers=call.headers, timeout_s=INVOKE_TIMEOUT_S)
    write(reply.raw)
    if reply.status >= 400:
        err(f"pyfaasd invoke: {call.name} answered {reply.status} {reply.reason}")
        return 1
    return 0


def logs(
    target: Target, name: str, namespace: str, follow: bool, tail: int | None, since: str, out: Out, err: Out
) -> int:
    query: dict[str, str] = {"name": name, "follow": "true" if follow else "false"}
    if namespace:
        query["namespace"] = namespace
    if tail is not None:
        query["tail"] = str(tail)
    if since:
        query["since"] = since
    url = f"{target.gateway}/system/logs?{urlencode(query)}"
    try:
        for line in ndjson("GET", url, target.credentials, timeout_s=None if follow else 60.0):
            where = f"{line.get('name', name)} ({line.get('instance', '')})"
            out(f"{line.get('timestamp', '')} {where} {line.get('text', '')}")
    except StatusError as e:
        return failed(f"cannot read the logs of {name}", e.response, err)
    except KeyboardInterrupt:
        return 0
    return 0


def remove(target: Target, names: list[str], namespace: str, out: Out, err: Out) -> int:
    status = 0
    for name in names:
        body = {"functionName": name, **({"namespace": namespace} if namespace else {})}
        reply = send("DELETE", f"{target.gateway}/system/functions", target.credentials, body=body)
        if reply.status in (200, 202):
            out(f"Removed {name}.")
        else:
            status = failed(f"cannot remove {name}", reply, err)
    return status
