"""The routes file: parsing annotations, the file's format, atomic replacement, and what a reader makes of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netconf.routes import (
    Route,
    RouteInvalidError,
    RouteKind,
    overlaps,
    parse_domain,
    parse_path,
    parse_routes,
    read_routes,
    render_routes,
    routes_of,
    write_routes,
)

FILES = Route(RouteKind.DOMAIN, "files.example.com", "files.openfaas-fn")
PREFIX = Route(RouteKind.PATH, "/files", "files.openfaas-fn")


def test_annotations_give_domains_lowercased_and_the_path_without_its_trailing_slash() -> None:
    found = routes_of(
        "files",
        "openfaas-fn",
        {"com.pyfaasd.domain": "Files.Example.com, ,b.example.org.", "com.pyfaasd.path": "/files/"},
    )
    assert found == [FILES, Route(RouteKind.DOMAIN, "b.example.org", "files.openfaas-fn"), PREFIX]
    assert routes_of("files", "openfaas-fn", None) == []


@pytest.mark.parametrize("text", ["", "a..b", "-a.com", "a_b.com", "a.com/x", "x" * 64 + ".com", "1.2.3.4"])
def test_a_domain_must_be_a_host_name(text: str) -> None:
    with pytest.raises(RouteInvalidError, match=r"com\.pyfaasd\.domain"):
        parse_domain(text)


@pytest.mark.parametrize("text", ["", "/", "//", "files", "/a b", "/a/./b", "/" + "a" * 200, "/_/x", "/metrics"])
def test_a_path_must_be_a_short_prefix_outside_the_gateways_own(text: str) -> None:
    with pytest.raises(RouteInvalidError, match=r"com\.pyfaasd\.path"):
        parse_path(text)


def test_overlap_is_one_domain_or_nested_paths_by_whole_segments() -> None:
    assert overlaps(FILES, Route(RouteKind.DOMAIN, "files.example.com", "x.dev"))
    assert overlaps(PREFIX, Route(RouteKind.PATH, "/files/docs", "x.dev"))
    assert not overlaps(PREFIX, Route(RouteKind.PATH, "/filesx", "x.dev"))
    assert not overlaps(FILES, PREFIX)


def test_the_file_round_trips_and_keeps_the_first_of_overlapping_routes(tmp_path: Path) -> None:
    path = tmp_path / "routes"
    assert write_routes(path, [PREFIX, FILES, Route(RouteKind.PATH, "/files/docs", "docs.openfaas-fn")])
    table = read_routes(path)
    assert table.complete
    assert table.routes == [FILES, PREFIX]
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_unchanged_content_is_not_written_and_a_change_is_a_new_inode(tmp_path: Path) -> None:
    path = tmp_path / "routes"
    write_routes(path, [FILES])
    inode = os.stat(path).st_ino
    assert not write_routes(path, [FILES])
    assert os.stat(path).st_ino == inode
    assert write_routes(path, [])
    assert read_routes(path).routes == []
    assert [p.name for p in tmp_path.iterdir()] == ["routes"]  # no temporary file left


def test_a_torn_or_edited_file_reads_as_incomplete() -> None:
    text = render_routes([FILES, PREFIX])
    assert parse_routes(text).complete
    assert not parse_routes(text[: len(text) // 2]).complete
    assert not parse_routes(text.replace("/files", "/other")).complete


def test_a_missing_file_is_no_routes(tmp_path: Path) -> None:
    table = read_routes(tmp_path / "routes")
    assert (table.routes, table.complete) == ([], True)
