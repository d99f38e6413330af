"""servicekit.json_text: JSON as Go's json.Marshal writes it."""

from __future__ import annotations

import json

from servicekit.json_text import dumps, dumps_bytes


def test_compact_and_utf8_like_go() -> None:
    value = {"name": "fn", "labels": {"k": "v"}, "replicas": [1, 2], "note": "café"}
    assert dumps(value) == '{"name":"fn","labels":{"k":"v"},"replicas":[1,2],"note":"café"}'
    assert dumps_bytes(value) == dumps(value).encode()


def test_html_characters_and_line_separators_are_escaped_as_go_does() -> None:
    text = dumps({"a": "<b>&\u2028\u2029"})
    assert text == '{"a":"\\u003cb\\u003e\\u0026\\u2028\\u2029"}'
    assert json.loads(text) == {"a": "<b>&\u2028\u2029"}
