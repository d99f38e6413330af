"""``pyfaasd secret create|ls|rm``: the secrets functions mount (``/system/secrets`` through the gateway)."""

from __future__ import annotations

from urllib.parse import urlencode

from pyfaasd.gateway_client import Out, Target, failed, send, table


def secret_create(target: Target, name: str, value: str, namespace: str, out: Out, err: Out) -> int:
    body = {"name": name, "value": value, **({"namespace": namespace} if namespace else {})}
    reply = send("POST", f"{target.gateway}/system/secrets", target.credentials, body=body)
    if reply.status not in (200, 201):
        return failed(f"cannot create secret {name}", reply, err)
    out(f"Created secret {name}. Mount it with --secret {name}: /var/openfaas/secrets/{name} in the function.")
    return 0


def secret_ls(target: Target, namespace: str, out: Out, err: Out) -> int:
    query = f"?{urlencode({'namespace': namespace})}" if namespace else ""
    reply = send("GET", f"{target.gateway}/system/secrets{query}", target.credentials)
    if reply.status != 200:
        return failed("cannot list the secrets", reply, err)
    rows = [("NAME", "NAMESPACE")]
    rows += [(s["name"], s.get("namespace", "")) for s in sorted(reply.json(), key=lambda s: str(s["name"]))]
    table(rows, out)
    return 0


def secret_rm(target: Target, names: list[str], namespace: str, out: Out, err: Out) -> int:
    status = 0
    for name in names:
        body = {"name": name, **({"namespace": namespace} if namespace else {})}
        reply = send("DELETE", f"{target.gateway}/system/secrets", target.credentials, body=body)
        if reply.status == 200:
            out(f"Removed secret {name}.")
        else:
            status = failed(f"cannot remove secret {name}", reply, err)
    return status
