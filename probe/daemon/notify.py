"""systemd's notify protocol (sd_notify(3)), in a few lines rather than a dependency.

Under ``Type=notify`` systemd sets ``$NOTIFY_SOCKET`` to a unix datagram socket: a path, or
an abstract-namespace name written with a leading "@". Each message is one datagram of
newline-separated ``KEY=VALUE`` lines: ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``,
``RELOADING=1``, ``STOPPING=1``. ``$WATCHDOG_USEC`` (for ``$WATCHDOG_PID``, when set) asks for
``WATCHDOG=1`` at least that often; we send at half of it, as the manual advises.
Without ``$NOTIFY_SOCKET`` every call does nothing. A send never raises nor waits: systemd
gone, or slow to read, must not stop measurements (the message is dropped).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends notify messages to the socket systemd named, if any."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog = _watchdog_seconds(env)
        self.sent = 0

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify."""
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """One datagram of KEY=VALUE lines (keys upper-cased); whether it was sent."""
        if self.address is None or not fields:
            return False
        text = "\n".join(f"{k.upper()}={_one_line(v)}" for k, v in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never wait: a reader that stopped reading (its queue full) must not stall
                # the event loop, and so every measurement in flight.
                sock.setblocking(False)
                sock.sendto(text.encode("utf-8"), self.address)
        except OSError:
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        """Tell systemd the daemon is up."""
        return self.send(ready="1", status=status)

    def status(self, status: str) -> bool:
        """A one-line status (``systemctl status`` shows it)."""
        return self.send(status=status)

    def ping(self) -> bool:
        """Keep the watchdog fed."""
        return self.send(watchdog="1")

    def stopping(self, status: str) -> bool:
        """Tell systemd the daemon is stopping."""
        return self.send(stopping="1", status=status)

    def reloading(self) -> bool:
        """Tell systemd a reload began (READY=1 ends it)."""
        return self.send(reloading="1")


def _address(value: str) -> str | bytes | None:
    """The socket address: a path, or an abstract name ("@x" is b"\\0x")."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    return None  # vsock and other forms: not on the systems we run on


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """How often to send WATCHDOG=1 (half the timeout), if the watchdog is ours."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2 / 1_000_000


def _one_line(value: str) -> str:
    return " ".join(str(value).split())
