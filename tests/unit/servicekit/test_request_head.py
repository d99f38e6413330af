"""The one request-head builder of servicekit: line, copied headers, framing."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from servicekit.client_side import header_text, header_value
from servicekit.request_head import REQUEST_DROP, RequestHead, framing


def test_the_client_headers_are_copied_minus_the_drop_set_and_connection_tokens() -> None:
    request = make_mocked_request(
        "PUT",
        "/x",
        headers=CIMultiDict(
            [
                ("Host", "gw:8080"),
                ("Connection", "keep-alive, X-Private"),
                ("X-Private", "secret"),
                ("Expect", "100-continue"),
                ("Content-Length", "3"),
                ("X-Forwarded-For", "1.1.1.1"),
                ("X-Forwarded-For", "2.2.2.2"),
                ("X-Kept", "yes"),
            ]
        ),
    )
    head = RequestHead("PUT", "/a%2Fb?q=1")
    head.add(b"Host", b"upstream:80")
    found = head.copy(request, REQUEST_DROP, frozenset({b"host", b"x-forwarded-for", b"x-absent"}))
    assert found == {b"host": b"gw:8080", b"x-forwarded-for": b"1.1.1.1, 2.2.2.2"}
    assert head.finish(3) == (
        b"PUT /a%2Fb?q=1 HTTP/1.1\r\nHost: upstream:80\r\n"
        b"X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nX-Kept: yes\r\nContent-Length: 3\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("method", "length", "line"),
    [
        ("GET", 0, b""),
        ("POST", 0, b"Content-Length: 0\r\n"),
        ("GET", 5, b"Content-Length: 5\r\n"),
        ("POST", None, b"Transfer-Encoding: chunked\r\n"),
    ],
)
def test_framing_says_how_the_body_ends(method: str, length: int | None, line: bytes) -> None:
    assert framing(method, length) == line
    assert RequestHead(method, "/").finish(length) == f"{method} / HTTP/1.1\r\n".encode() + line + b"\r\n"


def test_header_value_is_the_first_raw_value_whatever_the_case_of_its_name() -> None:
    request = make_mocked_request(
        "GET", "/", headers=CIMultiDict([("x-call-id", "first"), ("X-Call-Id", "second"), ("X-Call", "other")])
    )
    assert header_value(request, b"x-call-id") == b"first"
    assert header_value(request, b"x-absent") is None
    assert header_text(request, b"x-call-id") == "first"
    assert header_text(request, b"x-absent") is None
