"""Every JSON answer of the gateway is compact, as the Go gateway's: /system/info beside /system/functions."""

from __future__ import annotations

from tests.unit.gateway.conftest import AUTH, StartStack


async def test_info_is_compact_json(start_stack: StartStack) -> None:
    stack = await start_stack()
    response = await stack.client.get("/system/info", headers=AUTH)
    assert response.status == 200
    text = await response.text()
    assert text.startswith('{"provider":{')
    assert ", " not in text
    assert ": " not in text
