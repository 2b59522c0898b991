"""Fixtures shared by every test package: the test certificate authority; the tests'
consent to sweep; a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.prerequisites import missing
from tests.servers.postgres import (
    PostgresMissing,
    PostgresServer,
    running_postgres,
    server_binaries,
)

# The tests' explicit acceptance of what a sweep does (probe consent): every sweep they start
# measures only their own servers on 127.0.0.1 or the lab's namespaces. Set for the whole
# session, so subprocesses (probe run, the lab's probes) inherit it; a test of the refusal
# removes it for itself (tests/probe/test_safety.py).
os.environ["PROBE_VANTAGE_CONSENT"] = "true"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A certificate authority the probe is told to trust (as the lab root will be)."""
    return trustme.CA(organization_name="Probe Test Root")


@pytest.fixture(scope="session")
def rogue_ca() -> trustme.CA:
    """A certificate authority the probe does not trust (an interceptor's national root)."""
    return trustme.CA(organization_name="Information Security Certification Authority")


@pytest.fixture(scope="session")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path to a PEM file holding only the test CA: the probe's --ca-bundle."""
    path: Path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (tests/servers/postgres.py)."""
    try:
        import psycopg  # noqa: F401

        server_binaries()
    except (ImportError, PostgresMissing) as exc:
        missing(f"PostgreSQL is not available: {exc}")
    # Not under tmp_path: as root the server runs as 'postgres', which must reach it.
    directory = Path(tempfile.mkdtemp(prefix="probe-tests-pg-"))
    try:
        with running_postgres(directory) as server:
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's server: its SQLAlchemy URL."""
    return postgres_server.create_database()
