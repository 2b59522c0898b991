"""A real PostgreSQL server for tests and benchmarks: Debian's postgresql package, a cluster
made by initdb in a temporary directory, listening on a free port of 127.0.0.1 only.

`running_postgres(directory)` is a context manager (benchmarks use it directly); the pytest
fixtures in tests/conftest.py wrap it: one server per test session, and a new empty
database per test (`postgres_url`). Under CI=true a missing server is a failure, not a skip
(tests/prerequisites.py).

initdb and postgres refuse to run as root, so as root the cluster belongs to the
``postgres`` user the package creates (its directory is handed over to it); otherwise to
whoever runs the tests. Only the server this started is stopped (pg_ctl stop on its own
data directory, then its own PID), and the directory goes with the temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60.0  # a busy 2-core machine: initdb and the first start take seconds
STOP_TIMEOUT_S = 30


class PostgresMissing(RuntimeError):
    """This machine has no PostgreSQL server binaries (apt-get install postgresql)."""


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """A running server: where it listens and how to reach a database on it."""

    host: str
    port: int
    user: str
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for psycopg 3 (the driver the probe declares)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string, for psycopg directly."""
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def server_binaries() -> Path:
    """The newest installed server's bin directory (Debian keeps them per major version)."""
    root = Path("/usr/lib/postgresql")
    candidates = sorted(
        (p / "bin" for p in root.glob("*") if (p / "bin" / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not candidates:
        on_path = shutil.which("pg_ctl")
        if on_path and (Path(on_path).parent / "postgres").exists():
            return Path(on_path).parent
        raise PostgresMissing("no PostgreSQL server installed (apt-get install postgresql)")
    return candidates[-1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(owner: str | None) -> dict[str, object]:
    """subprocess arguments that run a command as ``owner`` (root cannot run the server)."""
    if owner is None:
        return {}
    entry = pwd.getpwnam(owner)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def running_postgres(directory: Path) -> Iterator[PostgresServer]:
    """Start a throwaway cluster under ``directory``; stop it on exit."""
    bin_dir = server_binaries()
    owner = "postgres" if os.geteuid() == 0 else None
    if owner is not None:
        try:
            pwd.getpwnam(owner)
        except KeyError as exc:
            raise PostgresMissing("running as root, and there is no 'postgres' user") from exc
    base = Path(directory) / "pg"
    data, sockets = base / "data", base / "run"
    sockets.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        # The owner must reach its directory: ``directory`` must not sit under a private one
        # (pytest's tmp_path does; the fixtures use a directory of their own in /tmp).
        entry = pwd.getpwnam(owner)
        os.chmod(directory, 0o755)
        for path in (base, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    user = owner or pwd.getpwuid(os.geteuid()).pw_name
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    subprocess.run(
        [bin_dir / "initdb", "-D", data, "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        env=env,
        timeout=START_TIMEOUT_S,
        **_as_owner(owner),  # type: ignore[call-overload]
    )
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        "-c max_connections=200 -c timezone=UTC"
    )
    log_file = base / "server.log"
    subprocess.run(
        [
            bin_dir / "pg_ctl",
            "-D",
            data,
            "-l",
            log_file,
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "start",
        ],
        check=True,
        capture_output=True,
        env=env,
        timeout=START_TIMEOUT_S + 10,
        **_as_owner(owner),  # type: ignore[call-overload]
    )
    server = PostgresServer("127.0.0.1", port, user, data)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(bin_dir, data, env, owner)


def restart_postgres(server: PostgresServer) -> None:
    """Restart the server in place (pg_ctl restart -m fast: clients are cut off, committed
    data stays); returns once it accepts connections again."""
    bin_dir = server_binaries()
    owner = "postgres" if os.geteuid() == 0 else None
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    log_file = server.data_dir.parent / "server.log"
    subprocess.run(
        [bin_dir / "pg_ctl", "-D", server.data_dir, "-l", log_file, "-m", "fast", "-w",
         "-t", str(int(START_TIMEOUT_S)), "restart"],
        check=True,
        capture_output=True,
        env=env,
        timeout=START_TIMEOUT_S + 10,
        **_as_owner(owner),  # type: ignore[call-overload]
    )  # fmt: skip
    _wait_ready(server)


def _wait_ready(server: PostgresServer) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(server.dsn(), connect_timeout=5):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop(bin_dir: Path, data: Path, env: dict[str, str], owner: str | None) -> None:
    """Stop this cluster only: pg_ctl on its own data directory, else its postmaster's PID."""
    result = subprocess.run(
        [
            bin_dir / "pg_ctl",
            "-D",
            data,
            "-m",
            "immediate",
            "-w",
            "-t",
            str(STOP_TIMEOUT_S),
            "stop",
        ],
        capture_output=True,
        env=env,
        timeout=STOP_TIMEOUT_S + 10,
        **_as_owner(owner),  # type: ignore[call-overload]
    )
    pid_file = data / "postmaster.pid"
    if result.returncode != 0 and pid_file.exists():
        with contextlib.suppress(ValueError, ProcessLookupError, OSError):
            os.kill(int(pid_file.read_text().split()[0]), 9)
