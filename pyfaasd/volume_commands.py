"""``pyfaasd volume create|ls|rm``: the volumes functions mount (``/system/volumes`` through the gateway)."""

from __future__ import annotations

from pyfaasd.gateway_client import Out, Target, failed, send, table


def volume_create(
    target: Target,
    name: str,
    *,
    host_path: str | None,
    nfs_server: str | None,
    nfs_path: str | None,
    nfs_options: str,
    out: Out,
    err: Out,
) -> int:
    body: dict[str, object] = {"name": name}
    if host_path:
        body["hostPath"] = host_path
    if nfs_server or nfs_path:
        if not (nfs_server and nfs_path):
            err("pyfaasd volume create: an NFS share needs both --nfs-server and --nfs-path")
            return 2
        body["nfs"] = {"server": nfs_server, "path": nfs_path, "options": nfs_options}
    reply = send("POST", f"{target.gateway}/system/volumes", target.credentials, body=body)
    if reply.status != 201:
        return failed(f"cannot create volume {name}", reply, err)
    out(f"Created volume {name} ({reply.json()['type']}). Mount it with the annotation com.pyfaasd.volume.{name}=/path")
    return 0


def volume_ls(target: Target, out: Out, err: Out) -> int:
    reply = send("GET", f"{target.gateway}/system/volumes", target.credentials)
    if reply.status != 200:
        return failed("cannot list the volumes", reply, err)
    rows = [("NAME", "TYPE", "SOURCE", "FUNCTIONS")]
    for volume in reply.json():
        nfs = volume.get("nfs")
        source = volume.get("hostPath") or (f"{nfs['server']}:{nfs['path']}" if nfs else "-")
        rows.append((volume["name"], volume["type"], source, ",".join(volume.get("functions", [])) or "-"))
    table(rows, out)
    return 0


def volume_rm(target: Target, names: list[str], out: Out, err: Out) -> int:
    status = 0
    for name in names:
        reply = send("DELETE", f"{target.gateway}/system/volumes", target.credentials, body={"name": name})
        if reply.status == 200:
            out(f"Removed volume {name}.")
        else:
            status = failed(f"cannot remove volume {name}", reply, err)
    return status
