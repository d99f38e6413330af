"""servicekit.settings: the value parsers every daemon shares, and the Setting table mechanism."""

from __future__ import annotations

import argparse
import enum
from pathlib import Path

import pytest

from servicekit.settings import (
    Choice,
    Setting,
    SettingError,
    add_flags,
    parse_bool,
    parse_duration,
    parse_http_url,
    parse_log_level,
    parse_optional_path,
    parse_positive_duration,
    whole_number,
    with_flags,
)


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


PORT = Setting("X_PORT", "--port", "8080", "a port", whole_number(1, 65535))
TIMEOUT = Setting("X_TIMEOUT", "--timeout", "30s", "a timeout", parse_positive_duration)
ENABLED = Setting("X_ENABLED", "--enabled", "true", "a switch", parse_bool)
COLOUR = Setting("X_COLOUR", "--colour", "red", "a colour", Choice(Colour))
HIDDEN = Setting("X_HIDDEN", None, "7", "env only", whole_number(0))
FILE = Setting("X_FILE", "--file", "", "a file", parse_optional_path, unset="<dir>/file")
TABLE = (PORT, TIMEOUT, ENABLED, COLOUR, HIDDEN, FILE)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flags(parser, TABLE)
    return parser.parse_args(argv)


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True", "yes", "On", " true "])
def test_booleans_true_include_every_go_parsebool_spelling(text: str) -> None:
    assert parse_bool("B", text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False", "no", "OFF"])
def test_booleans_false_include_every_go_parsebool_spelling(text: str) -> None:
    assert parse_bool("B", text) is False


@pytest.mark.parametrize("text", ["", "2", "maybe", "yes please", "tru"])
def test_other_booleans_are_errors_naming_the_setting(text: str) -> None:
    with pytest.raises(SettingError, match=r"^B: "):
        parse_bool("B", text)


@pytest.mark.parametrize("text", ["inf", "Infinity", "-inf", "nan", "1e999", "-0.5"])
def test_durations_refuse_infinite_nan_and_negative(text: str) -> None:
    with pytest.raises(SettingError, match=r"^D: .*finite duration"):
        parse_duration("D", text)


def test_positive_duration_refuses_zero() -> None:
    assert parse_positive_duration("D", "250ms") == 0.25
    with pytest.raises(SettingError, match=r"^D: "):
        parse_positive_duration("D", "0s")


def test_log_level_is_checked_and_lower_cased() -> None:
    assert parse_log_level("L", " DEBUG ") == "debug"
    with pytest.raises(SettingError, match=r"^L: "):
        parse_log_level("L", "loud")


def test_http_url_is_split_for_the_client() -> None:
    url = parse_http_url("U", "http://localhost:9091/base/")
    assert (url.url, url.host, url.port, url.base_path) == ("http://127.0.0.1:9091/base", "127.0.0.1", 9091, "/base")
    assert parse_http_url("U", "http://h").port == 80
    for bad in ("https://h:1", "http://[::1]:1", "http://h:x", "http://h:1/?q=1", "h:1"):
        with pytest.raises(SettingError, match=r"^U: "):
            parse_http_url("U", bad)


def test_choice_takes_any_case_and_names_the_values() -> None:
    assert Choice(Colour)("C", "BLUE") is Colour.BLUE
    with pytest.raises(SettingError, match=r"^C: 'green' is not one of red, blue"):
        Choice(Colour)("C", "green")


def test_read_takes_the_default_when_unset_or_blank() -> None:
    assert PORT.read({}) == 8080
    assert PORT.read({"X_PORT": "  "}) == 8080
    assert PORT.read({"X_PORT": "9"}) == 9
    assert FILE.read({}) is None
    assert FILE.read({"X_FILE": "/f"}) == Path("/f")


def test_read_errors_name_the_variable() -> None:
    with pytest.raises(SettingError, match=r"^X_PORT: "):
        PORT.read({"X_PORT": "70000"})


def test_flags_win_over_the_environment_and_absent_flags_leave_it() -> None:
    env = {"X_PORT": "1", "X_TIMEOUT": "5s", "X_ENABLED": "false", "X_HIDDEN": "3"}
    merged = with_flags(env, parse(["--port", "2", "--enabled", "--colour", "blue"]), TABLE)
    assert [s.read(merged) for s in TABLE] == [2, 5.0, True, Colour.BLUE, 3, None]
    assert ENABLED.read(with_flags({}, parse(["--no-enabled"]), TABLE)) is False
    assert env["X_PORT"] == "1"  # the caller's mapping is left alone


def test_rows_without_a_flag_get_none_and_choices_are_offered() -> None:
    with pytest.raises(SystemExit):
        parse(["--hidden", "1"])
    with pytest.raises(SystemExit):
        parse(["--colour", "green"])


def test_help_names_the_variable_and_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "a port [X_PORT, default 8080]" in out
    assert "a file [X_FILE, default <dir>/file]" in out
    assert "--no-enabled" in out


def test_with_flag_renames_only_the_flag() -> None:
    renamed = PORT.with_flag("--other-port")
    assert (renamed.env, renamed.flag, renamed.default) == ("X_PORT", "--other-port", "8080")
    assert renamed.with_flag(None).flag is None
