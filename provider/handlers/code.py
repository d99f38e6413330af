"""/system/code: upload a bundle (201 new, 200 already stored), list them, remove an unused one; and
/system/runtimes, the runtime library that code functions deploy onto. Upload, list, remove, prune and the runtimes
serve either backend; installing requirements is the docker backend's.

The upload is read from the stream with the bundle limit (``PYFAASD_CODE_MAX_BYTES``), not the provider's
small JSON body limit, and unpacked in a thread.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from provider.code_store import check_digest
from provider.errors import CodeBundleTooLargeError, CodeInUseError, CodeNotCarriedError
from provider.handlers import Progress, empty, read_json, stream_ndjson
from provider.keys import CODE, CODE_STORE, FUNCTIONS
from servicekit import json_text

_CHUNK = 1 << 16


async def upload_code(request: web.Request) -> web.Response:
    store = request.app[CODE_STORE]
    data = await _read_at_most(request, store.limits.max_bytes)
    bundle, created = await asyncio.to_thread(store.put, data, request.query.get("filename", "handler.py"))
    body = {"digest": bundle.digest, "size": bundle.size, "files": list(bundle.files)}
    return web.json_response(body, status=201 if created else 200, dumps=json_text.dumps)


async def list_code(request: web.Request) -> web.Response:
    usage = await request.app[FUNCTIONS].code_usage()
    bundles = await asyncio.to_thread(request.app[CODE_STORE].list)
    return web.json_response(
        [{**b.to_json(), "functions": usage.get(b.digest, [])} for b in bundles], dumps=json_text.dumps
    )


async def delete_code(request: web.Request) -> web.Response:
    digest = check_digest(request.match_info["digest"])
    users = (await request.app[FUNCTIONS].code_usage()).get(digest)
    if users:
        raise CodeInUseError(f"code bundle {digest} is used by {', '.join(users)}: remove or update them first")
    await asyncio.to_thread(request.app[CODE_STORE].delete, digest)
    return empty(200)


async def install_code_dependencies(request: web.Request) -> web.StreamResponse:
    """Install a bundle's requirements for a runtime before deploying it, streaming pip's output as NDJSON:
    ``{"line": ...}`` lines, then ``{"status": "none|cached|installed"}`` or ``{"error": ...}``."""
    body = await read_json(request, "install request")
    code = request.app[CODE]
    plan = await code.install_plan(request.match_info["digest"], str(body.get("image") or ""))

    async def install(report: Progress) -> dict[str, object]:
        return {"status": await code.install(plan, lambda line: report({"line": line}))}

    return await stream_ndjson(request, install)


async def prune_code(request: web.Request) -> web.Response:
    """Remove the dependency sets no function uses (``pyfaasd code prune``)."""
    removed = await request.app[FUNCTIONS].prune_dependencies()
    return web.json_response({"removedDependencySets": removed}, dumps=json_text.dumps)


async def list_runtimes(request: web.Request) -> web.Response:
    return web.json_response([r.to_json() for r in await request.app[FUNCTIONS].runtimes()], dumps=json_text.dumps)


async def no_dependency_install(request: web.Request) -> web.Response:
    """The swarm backend's answer to an install of requirements: 400, naming why (docs/swarm.md)."""
    raise CodeNotCarriedError(
        f"code bundle {check_digest(request.match_info['digest'])}: the swarm backend cannot install requirements "
        "on every node yet (docs/swarm.md); put the packages into the runtime image, or use the docker backend"
    )


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise CodeBundleTooLargeError(
            f"code bundle of {request.content_length} bytes is over the limit of {limit} bytes (PYFAASD_CODE_MAX_BYTES)"
        )
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise CodeBundleTooLargeError(f"code bundle is over the limit of {limit} bytes (PYFAASD_CODE_MAX_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)
