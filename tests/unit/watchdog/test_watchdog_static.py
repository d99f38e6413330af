"""static mode: files, index.html, 404 and Range."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.watchdog_harness import StartWatchdog
from watchdog.errors import StartupError


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "public"
    (root / "docs").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "docs" / "index.html").write_text("docs")
    (root / "data.txt").write_text("0123456789")
    (tmp_path / "secret.txt").write_text("outside")
    return root


async def test_static_serves_files_index_and_404(start_watchdog: StartWatchdog, site: Path) -> None:
    harness = await start_watchdog({"mode": "static", "static_path": str(site)})
    assert await (await harness.client.get("/")).text() == "<h1>home</h1>"
    assert await (await harness.client.get("/data.txt")).text() == "0123456789"
    assert (await harness.client.get("/missing")).status == 404
    moved = await harness.client.get("/docs", allow_redirects=False)
    assert (moved.status, moved.headers["Location"]) == (301, "/docs/")
    assert await (await harness.client.get("/docs/")).text() == "docs"


async def test_static_honours_range(start_watchdog: StartWatchdog, site: Path) -> None:
    harness = await start_watchdog({"mode": "static", "static_path": str(site)})
    response = await harness.client.get("/data.txt", headers={"Range": "bytes=2-5"})
    assert response.status == 206
    assert await response.text() == "2345"


async def test_static_never_leaves_its_root(start_watchdog: StartWatchdog, site: Path) -> None:
    harness = await start_watchdog({"mode": "static", "static_path": str(site)})
    assert (await harness.client.get("/%2E%2E/secret.txt")).status == 404
    assert (await harness.client.get("/../secret.txt")).status == 404


async def test_static_refuses_writes(start_watchdog: StartWatchdog, site: Path) -> None:
    harness = await start_watchdog({"mode": "static", "static_path": str(site)})
    assert (await harness.client.post("/data.txt", data=b"x")).status == 405


async def test_static_path_that_is_not_a_directory_fails_at_start(start_watchdog: StartWatchdog, tmp_path) -> None:
    with pytest.raises(StartupError, match="static_path"):
        await start_watchdog({"mode": "static", "static_path": str(tmp_path / "nope")})
