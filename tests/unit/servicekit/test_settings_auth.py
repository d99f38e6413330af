import base64
import stat

import pytest

from servicekit.auth import (
    Credentials,
    CredentialsError,
    check_authorization,
    ensure_credentials,
    load_credentials,
)
from servicekit.settings import (
    Setting,
    SettingError,
    parse_bool,
    parse_duration,
    parse_int,
    parse_listen_address,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5", 1.5), ("60s", 60.0), ("1m30s", 90.0), ("250ms", 0.25), ("1h", 3600.0), ("0", 0.0)],
)
def test_parse_duration_accepts_go_forms(text, seconds):
    assert parse_duration("X", text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "s", "-1", "1m x", "5s3"])
def test_parse_duration_rejects_junk_naming_the_setting(text):
    with pytest.raises(SettingError, match=r"^PYFAASD_T: "):
        parse_duration("PYFAASD_T", text)


def test_parse_bool_and_int():
    assert parse_bool("B", "TRUE") is True
    assert parse_bool("B", "0") is False
    with pytest.raises(SettingError, match="B"):
        parse_bool("B", "maybe")
    assert parse_int("N", " 7 ", minimum=0) == 7
    with pytest.raises(SettingError, match="below the minimum"):
        parse_int("N", "-1", minimum=0)


def test_parse_listen_address():
    assert parse_listen_address("A", "127.0.0.1:8081") == ("127.0.0.1", 8081)
    assert parse_listen_address("A", ":8080") == ("0.0.0.0", 8080)
    assert parse_listen_address("A", "localhost:1") == ("127.0.0.1", 1)
    for bad in ("8080", "[::]:8080", "1.2.3.4:99999", "host:80"):
        with pytest.raises(SettingError):
            parse_listen_address("A", bad)


def test_ensure_credentials_creates_once_with_private_files(tmp_path):
    creds, created = ensure_credentials(tmp_path / "secrets")
    assert created
    assert creds.user == "admin"
    assert len(creds.password) >= 24
    for name in ("basic-auth-user", "basic-auth-password"):
        assert stat.S_IMODE((tmp_path / "secrets" / name).stat().st_mode) == 0o600
    again, created_again = ensure_credentials(tmp_path / "secrets")
    assert (again, created_again) == (creds, False)
    assert "password=<hidden>" in repr(creds)


def test_load_credentials_trims_and_names_missing_file(tmp_path):
    (tmp_path / "basic-auth-user").write_text(" admin \n")
    with pytest.raises(CredentialsError, match="basic-auth-password"):
        load_credentials(tmp_path)
    (tmp_path / "basic-auth-password").write_text("s3cret\n")
    assert load_credentials(tmp_path) == Credentials("admin", "s3cret")


def test_check_authorization():
    creds = Credentials("admin", "pw:with:colons")
    assert check_authorization(creds.authorization, creds)
    assert check_authorization("basic " + base64.b64encode(b"admin:pw:with:colons").decode(), creds)
    for bad in (
        None,
        "",
        "Bearer x",
        "Basic !!!",
        "Basic " + base64.b64encode(b"admin").decode(),
        Credentials("admin", "nope").authorization,
        Credentials("root", "pw:with:colons").authorization,
    ):
        assert not check_authorization(bad, creds)


def test_local_url_reaches_a_wildcard_listener_on_loopback():
    address = Setting("A", None, "127.0.0.1:1", "", parse_listen_address)

    def local_url(name: str, value: str) -> str:
        return address.local_url({name: value})

    assert local_url("A", "0.0.0.0:8080") == "http://127.0.0.1:8080"
    assert local_url("A", ":8081") == "http://127.0.0.1:8081"
    assert local_url("A", "10.0.0.5:9") == "http://10.0.0.5:9"
