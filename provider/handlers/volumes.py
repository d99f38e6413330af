"""/system/volumes: create (201, 409 if it exists), list with the functions using each, delete (409 if used); for
either backend."""

from __future__ import annotations

from aiohttp import web

from provider.handlers import empty, read_json
from provider.keys import FUNCTIONS, VOLUMES
from provider.volumes import VolumeRequest, check_volume_name
from servicekit import json_text


async def create_volume(request: web.Request) -> web.Response:
    volume = await request.app[VOLUMES].create(VolumeRequest.parse(await read_json(request, "Volume")))
    return web.json_response(volume.to_json([]), status=201, dumps=json_text.dumps)


async def list_volumes(request: web.Request) -> web.Response:
    users = await request.app[FUNCTIONS].volume_users()
    volumes = await request.app[VOLUMES].all()
    return web.json_response([v.to_json(users.get(v.name, [])) for v in volumes], dumps=json_text.dumps)


async def delete_volume(request: web.Request) -> web.Response:
    body = await read_json(request, "Volume")
    name = check_volume_name(str(body.get("name") or ""))
    await request.app[VOLUMES].delete(name, (await request.app[FUNCTIONS].volume_users()).get(name, []))
    return empty(200)
