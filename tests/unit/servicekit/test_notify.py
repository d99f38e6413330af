import asyncio
import os
import secrets
import socket

import pytest

from servicekit import notify


@pytest.fixture
def listener(tmp_path):
    """A real AF_UNIX datagram socket at a path, like systemd's /run/systemd/notify."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    try:
        yield str(path), sock
    finally:
        sock.close()


@pytest.fixture
def abstract_listener():
    """The same in the abstract namespace: NOTIFY_SOCKET=@name binds b'\\0name'."""
    name = f"pyfaasd-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        yield "@" + name, sock
    finally:
        sock.close()


def test_notify_unset_socket_is_a_noop_returning_false(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.notify("READY=1") is False
    assert notify.ready() is False
    assert notify.watchdog_ping() is False


def test_notify_path_socket_receives_the_datagram(monkeypatch, listener):
    path, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify.notify("READY=1") is True
    assert sock.recv(4096) == b"READY=1"


def test_notify_abstract_socket_receives_the_datagram(monkeypatch, abstract_listener):
    name, sock = abstract_listener
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    assert notify.ready("listening on 127.0.0.1:8081") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=listening on 127.0.0.1:8081"


def test_notify_helpers_send_their_assignments(monkeypatch, listener):
    path, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify.stopping()
    assert notify.status("draining 3 requests\nsecond line")
    assert notify.watchdog_ping()
    assert notify.extend_timeout(1.5)
    assert notify.stopping("bye")
    received = [sock.recv(4096) for _ in range(5)]
    assert received == [
        b"STOPPING=1",
        b"STATUS=draining 3 requests second line",  # a newline would start another assignment
        b"WATCHDOG=1",
        b"EXTEND_TIMEOUT_USEC=1500000",
        b"STOPPING=1\nSTATUS=bye",
    ]


def test_notify_env_argument_overrides_os_environ(monkeypatch, listener):
    path, sock = listener
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.notify("X=1", env={"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"X=1"


@pytest.mark.parametrize("value", ["", "@", "relative/path", "vsock:2:1234"])
def test_notify_unsupported_address_returns_false(value):
    assert notify.notify("READY=1", env={"NOTIFY_SOCKET": value}) is False


def test_notify_nobody_listening_returns_false_instead_of_raising(tmp_path):
    assert notify.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "junk"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
    ids=["unset", "set", "our-pid", "other-pid", "bad-pid", "zero", "junk"],
)
def test_watchdog_interval_is_half_the_usec_and_only_for_our_pid(env, expected):
    assert notify.watchdog_interval(env) == expected


async def test_start_watchdog_without_watchdog_usec_returns_none():
    assert notify.start_watchdog({}) is None


async def test_start_watchdog_pings_repeatedly_until_stopped(monkeypatch, listener):
    path, sock = listener
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    task = notify.start_watchdog({"WATCHDOG_USEC": "40000", "WATCHDOG_PID": str(os.getpid())})  # ping every 20 ms
    assert task is not None
    await asyncio.sleep(0.15)
    await notify.stop_watchdog(task)
    assert task.cancelled()
    pings = []
    while True:
        try:
            pings.append(sock.recv(4096))
        except BlockingIOError:
            break
    assert len(pings) >= 3
    assert set(pings) == {b"WATCHDOG=1"}


async def test_stop_watchdog_accepts_none():
    await notify.stop_watchdog(None)
