"""/ui/: the web UI's files behind the /system basic auth, from this host only."""

from __future__ import annotations

import re

import pytest

from gateway.ui import ASSETS_DIR
from tests.unit.gateway.conftest import AUTH, StartStack


async def test_the_ui_needs_the_system_credentials(start_stack: StartStack) -> None:
    stack = await start_stack()
    for path in ("/ui", "/ui/", "/ui/app.js"):
        response = await stack.client.get(path, allow_redirects=False)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"] == 'Basic realm="Restricted"'


async def test_ui_redirects_to_the_folder_and_serves_the_page(start_stack: StartStack) -> None:
    stack = await start_stack()
    moved = await stack.client.get("/ui", headers=AUTH, allow_redirects=False)
    assert moved.status == 308
    assert moved.headers["Location"] == "/ui/"
    page = await stack.client.get("/ui/", headers=AUTH)
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    assert '<label for="image-image">Image</label>' in html
    assert '<label for="image-name">Name</label>' in html
    assert '<label for="invoke-body">Body</label>' in html


@pytest.mark.parametrize(("name", "content_type"), [("app.js", "text/javascript"), ("style.css", "text/css")])
async def test_assets_have_their_types(start_stack: StartStack, name: str, content_type: str) -> None:
    stack = await start_stack()
    response = await stack.client.get(f"/ui/{name}", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert (await response.read()) == (ASSETS_DIR / name).read_bytes()


async def test_unknown_and_traversing_paths_are_404(start_stack: StartStack) -> None:
    stack = await start_stack()
    for path in ("/ui/nothing.js", "/ui/../gateway/ui.py", "/ui/%2e%2e/app.py", "/ui/sub/app.js"):
        response = await stack.client.get(path, headers=AUTH)
        assert response.status == 404, path
    assert stack.provider.calls == []


def test_no_asset_comes_from_another_host() -> None:
    """Every file the pages load is one of ours: no URL with a scheme or // in any of them."""
    for path in ASSETS_DIR.iterdir():
        text = path.read_text()
        outside = [m for m in re.findall(r"""(?:src|href)=["']([^"']+)""", text) if "//" in m]
        assert outside == [], path
        assert "import(" not in text
        for module in re.findall(r"""from\s+["']([^"']+)["']""", text):
            assert module.startswith("./"), (path, module)
