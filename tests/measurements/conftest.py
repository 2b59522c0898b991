"""Fixtures for the measurement tests: real local servers."""

from tests.servers.dns_server import dns_server  # noqa: F401 - fixture
from tests.servers.doh_server import doh_server  # noqa: F401 - fixture
from tests.servers.http_server import rogue_web_server, web_server  # noqa: F401 - fixtures
from tests.servers.tcp_servers import (  # noqa: F401 - fixtures
    closed_port,
    dropping_port,
    eof_peer,
    reset_peer,
    silent_listener,
)
