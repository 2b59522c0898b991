"""A loopback "internet" for end-to-end runs of the real ``probe`` command.

Every server runs on 127.0.0.1 in one background event loop (its own thread), so the probe
can run in the foreground (``probe.cli.main``) or as a subprocess, exactly as a user runs it.
Made-up names (*.test) are answered by a scripted ISP resolver (what the probe is told to
use, and what a censor may tamper with) and by a truthful table behind a DNS-over-HTTPS
endpoint (the control). The probe is told ``routable = 127.0.0.0/8`` so loopback counts as
public, as the lab's reserved range will.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import trustme

from tests.servers.dns_server import Answer, Behaviour, ScriptedDNSServer
from tests.servers.doh_server import DoHServer
from tests.servers.http_server import WebServer

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


class BackgroundLoop:
    """An event loop in a daemon thread; coroutines are submitted and awaited with a bound."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the background loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class World:
    """The resolver under test, the DoH control, a web server and any extra peers."""

    def __init__(self, background: BackgroundLoop, ca: trustme.CA, names: list[str]) -> None:
        self.bg = background
        self.resolver = ScriptedDNSServer()
        self.truth = ScriptedDNSServer()  # never started: only its table, behind DoH
        self.doh = DoHServer(ca, self.truth)
        self.web = WebServer(ca, names)
        self._peers: list[Any] = []

    async def _start(self) -> None:
        await self.resolver.start()
        await self.doh.start()
        await self.web.start()

    async def _stop(self) -> None:
        for peer in reversed(self._peers):
            await peer.__aexit__(None, None, None)
        await self.web.stop()
        await self.doh.stop()
        await self.resolver.stop()

    def peer(self, peer: T) -> T:
        """Start a peer from tests.servers.tcp_servers in the world's loop."""
        self.bg.run(peer.__aenter__())  # type: ignore[attr-defined]
        self._peers.append(peer)
        return peer

    def name(
        self, name: str, resolver: Behaviour | None = None, truth: Behaviour | None = None
    ) -> None:
        """Script a name: what the resolver under test says, and what DoH (the truth) says."""
        self.resolver.set(name, resolver or Answer(LOOPBACK))
        self.truth.set(name, truth or Answer(LOOPBACK))

    def write_config(self, path: Path, reference: str, **limits: Any) -> Path:
        """A probe config pointing at this world, with short timeouts for tests."""
        values = {
            "retries": 1, "retry_delay": 0.1, "dns_timeout": 1.0, "connect_timeout": 1.0,
            "http_timeout": 2.0, "target_timeout": 20.0, "sweep_timeout": 120.0,
        }  # fmt: skip
        values.update(limits)
        lines = [
            "[vantage]",
            'name = "loopback-test"',
            'country = "KZ"',
            "asn = 64500",
            "consent = true",  # the tests accept what a sweep does (see tests/conftest.py)
            "[network]",
            f'resolver = "{self.resolver.address}"',
            f'ca_bundle = "{self.ca_bundle}"',
            'routable = ["127.0.0.0/8"]',
            "[control]",
            f'doh = ["{self.doh.url}"]',
            f'reference = ["{reference}"]',
            "[limits]",
            *(f"{k} = {v}" for k, v in values.items()),
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    ca_bundle: str = ""


def free_port() -> int:
    """A port nothing on 127.0.0.1 listens on now."""
    return _free_port()


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def helper_process(
    world: World, token_file: Path | None = None, *, flags: tuple[str, ...] = ()
) -> Iterator[str]:
    """`probe helper serve` as a user starts it, in its own process, using the world's
    resolver and CA (and asking for the token in ``token_file``); yields its URL."""
    port = _free_port()
    token = ["--token-file", str(token_file), *flags] if token_file else list(flags)
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "helper", "serve", "--listen", f"{LOOPBACK}:{port}",
         "--resolver", world.resolver.address, "--ca-bundle", world.ca_bundle,
         "--routable", "127.0.0.0/8", *token],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        # Blocks until it listens or dies; bounded by the server's own 10 s.
        line = proc.stderr.readline()
        assert "listening" in line, line
        yield f"http://{LOOPBACK}:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def running_world(ca: trustme.CA, ca_bundle: str, names: list[str]) -> Iterator[World]:
    """A started world in which every name resolves to 127.0.0.1 (until a test scripts it
    otherwise with ``World.name``), stopped on exit."""
    with BackgroundLoop() as bg:
        world = World(bg, ca, names)
        world.ca_bundle = ca_bundle
        bg.run(world._start())
        for name in names:
            world.name(name)
        try:
            yield world
        finally:
            bg.run(world._stop())
