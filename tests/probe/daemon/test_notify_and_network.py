"""systemd's notify socket (a real datagram socket the test binds) and the network reading."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from probe.daemon.network import (
    NetworkState,
    default_route4,
    default_route6,
    read_network,
    system_resolver,
)
from probe.daemon.notify import Notifier


def _bound(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_notify_to_a_path(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with _bound(str(path)) as sock:
        n = Notifier({"NOTIFY_SOCKET": str(path)})
        assert n.ready("up: next in 3 s")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up: next in 3 s"
        assert n.ping() and sock.recv(4096) == b"WATCHDOG=1"
        assert n.stopping("bye\nnow") and sock.recv(4096) == b"STOPPING=1\nSTATUS=bye now"


def test_notify_to_an_abstract_address() -> None:
    name = f"probe-test-{os.getpid()}"
    with _bound(b"\0" + name.encode()) as sock:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).reloading()
        assert sock.recv(4096) == b"RELOADING=1"


def test_without_a_socket_or_with_one_gone_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier({}).enabled and not Notifier({}).ready("x")
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready("x")


def test_a_reader_that_stopped_reading_never_blocks_the_sender(tmp_path: Path) -> None:
    path = tmp_path / "full"
    with _bound(str(path)):
        n = Notifier({"NOTIFY_SOCKET": str(path)})
        results = [n.ping() for _ in range(5000)]  # far more than the queue holds
    assert results[0] and not all(results)


def test_watchdog_at_half_the_timeout_and_only_for_our_pid() -> None:
    assert Notifier({"WATCHDOG_USEC": "20000000"}).watchdog == 10.0
    assert Notifier({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}).watchdog is None
    mine = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdog == 2.0
    assert Notifier({"WATCHDOG_USEC": "x"}).watchdog is None


ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
"""
ROUTE6 = (
    "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "fe800000000000000000000000000001 00000400 00000003 00000000 00000003    wlan0\n"
)


def test_default_routes_and_resolver_are_read() -> None:
    assert default_route4(ROUTE) == "wlan0 via 0101A8C0"
    assert default_route4(ROUTE.replace("0003", "0002")) is None  # not up
    assert default_route6(ROUTE6) == "wlan0 via fe800000000000000000000000000001"
    assert default_route4("") is None and default_route6("garbage") is None
    conf = "# by NetworkManager\nsearch lan\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n"
    assert system_resolver(conf) == "192.0.2.53"


def test_a_network_change_changes_the_digest_which_names_no_address(tmp_path: Path) -> None:
    (tmp_path / "route").write_text(ROUTE)
    (tmp_path / "ipv6_route").write_text(ROUTE6)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\n")
    home = read_network(None, None, tmp_path, resolv)
    assert home.online and home.resolver == "192.0.2.53"
    (tmp_path / "route").write_text(ROUTE.replace("wlan0", "usb0"))
    phone = read_network(None, None, tmp_path, resolv)
    assert phone != home and phone.digest() != home.digest() and len(home.digest()) == 12
    assert "0101A8C0" not in home.digest() and phone == read_network(None, None, tmp_path, resolv)
    assert not NetworkState(None, None, None).online
    assert read_network("198.51.100.1", 9198, tmp_path, resolv).resolver == "198.51.100.1"
