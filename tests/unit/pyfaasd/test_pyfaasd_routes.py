"""``pyfaasd routes``: the routes file as a table (or JSON) with each route's URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netconf.routes import Route, RouteKind, write_routes
from pyfaasd.cli import main


@pytest.fixture
def state(tmp_path: Path) -> Path:
    write_routes(
        tmp_path / "routes",
        [
            Route(RouteKind.DOMAIN, "files.example.com", "files.openfaas-fn"),
            Route(RouteKind.PATH, "/files", "files.openfaas-fn"),
            Route(RouteKind.DOMAIN, "blog.example.org", "blog.dev"),
        ],
    )
    return tmp_path


def test_lists_each_route_with_its_url(
    state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYFAASD_TLS_CERT", raising=False)
    monkeypatch.delenv("PYFAASD_TLS_DIR", raising=False)
    monkeypatch.setenv("PYFAASD_GATEWAY_ADDR", "0.0.0.0:8080")
    assert main(["routes", "--state-dir", str(state), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"function": "blog.dev", "kind": "domain", "route": "blog.example.org", "url": "http://blog.example.org:8080/"},
        {"function": "files.openfaas-fn", "kind": "domain", "route": "files.example.com", "url": "http://files.example.com:8080/"},
        {"function": "files.openfaas-fn", "kind": "path", "route": "/files", "url": "http://127.0.0.1:8080/files/"},
    ]  # fmt: skip


def test_urls_are_https_when_the_gateway_has_a_certificate(
    state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYFAASD_TLS_CERT", "/etc/ssl/gateway.pem")
    monkeypatch.setenv("PYFAASD_TLS_KEY", "/etc/ssl/gateway.key")
    monkeypatch.setenv("PYFAASD_TLS_ADDR", ":443")
    assert main(["routes", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "files.openfaas-fn  domain  https://files.example.com/" in out
    assert "blog.dev           domain  https://blog.example.org/" in out


def test_says_so_when_there_are_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", "--state-dir", str(tmp_path)]) == 0
    assert "no routes" in capsys.readouterr().out
