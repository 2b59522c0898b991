"""The schema's revision, and bringing a database to it: Alembic, run from inside the package.

What an open finds, and what it does (migrations/ holds the revisions):

    no probe tables                      a writer creates it at the head: the models' tables,
                                         the views (views.py) and the head's stamp (tests
                                         hold this equal to every revision applied in order)
    alembic_version at the head          used as it is
    alembic_version at an older one      a writer backs the file up, then upgrades in place
    meta.schema_version 2, no Alembic    (made before Alembic) the same, from revision 0001
    meta.schema_version 1 (SQLite)       the same, after the old rebuild of runs (to 0001)
    a revision this probe does not know  refused: a newer probe wrote it (StoreError)

The backup is ``<database>.pre-upgrade-<revision>.bak`` beside the file, a copy made with
SQLite's backup API while this connection holds the write lock, so no sweep can write between
the copy and the upgrade; the upgrade and its stamp are one transaction, so a crash leaves
the database as it was (and the copy beside it).
A read-only open writes nothing: it reads every revision it knows as it is (queries.py
selects only columns that schema 1 already had).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    insert,
    inspect,
    select,
    update,
)

from probe.store import compact
from probe.store.errors import StoreError
from probe.store.migrations import HEAD, REVISIONS
from probe.store.models import SCHEMA_VERSION, Meta, metadata
from probe.store.partitions import create_defaults, metadata_for
from probe.store.views import create_views

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
BEFORE_ALEMBIC = "0001"  # the revision that is schema 2, as the probe made it before Alembic


# Alembic's own table, as Alembic creates it: a new database is stamped without Alembic.
_ALEMBIC_VERSION = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration, in code (no alembic.ini): this package's migrations, on this
    connection."""
    from alembic.config import Config  # only to upgrade (see migrations.REVISIONS)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this probe knows."""
    return HEAD


@dataclass(frozen=True, slots=True)
class Found:
    """What an open found: an Alembic revision, or a schema version from before Alembic."""

    revision: str | None  # None: a new database, or schema 1 (no revision holds it)
    legacy: str | None = None  # meta.schema_version of a database made before Alembic

    @property
    def new(self) -> bool:
        """No probe tables yet."""
        return self.revision is None and self.legacy is None

    def describe(self) -> str:
        """As a message names it."""
        if self.legacy is not None:
            return f"schema version {self.legacy}"
        return f"revision {self.revision}"


@dataclass(frozen=True, slots=True)
class Upgrade:
    """An upgrade an open made, and where the copy from before it is."""

    label: str
    found: str  # as Found.describe() says it
    revision: str
    backup: Path | None  # None: not a file (PostgreSQL), so the probe could not copy it

    def message(self) -> str:
        """One line for the log."""
        kept = (
            f"the file as it was is kept at {self.backup}"
            if self.backup is not None
            else "no copy was made (not a file): back it up yourself before upgrading the probe"
        )
        return (
            f"upgraded database {self.label} from {self.found} to revision {self.revision}; {kept}"
        )


def backup_path(database: Path, revision: str) -> Path:
    """Where the copy made before upgrading a file to ``revision`` goes."""
    return database.with_name(f"{database.name}.pre-upgrade-{revision}.bak")


def find(conn: Connection, label: str) -> Found:
    """The database's revision; a StoreError for one this probe cannot read or upgrade."""
    tables = set(inspect(conn).get_table_names())
    heads: list[str] = []
    if _ALEMBIC_VERSION.name in tables:
        heads = list(conn.execute(select(_ALEMBIC_VERSION.c.version_num)).scalars())
    if heads:
        if len(heads) > 1 or heads[0] not in REVISIONS:
            raise StoreError(
                f"database {label} is at schema revision {', '.join(heads)}, which this probe "
                f"does not know (its newest is {head()}): a newer probe wrote it; upgrade the "
                "probe to use it"
            )
        return Found(heads[0])
    if Meta.name not in tables:
        if tables & set(metadata.tables):
            raise StoreError(
                f"database {label} has probe tables but no schema version; "
                "it was not made by this probe"
            )
        return Found(None)
    version = conn.execute(
        select(Meta.c.value).where(Meta.c.key == "schema_version")
    ).scalar_one_or_none()
    if version == "2":
        return Found(BEFORE_ALEMBIC, legacy=version)
    if version == "1":
        return Found(None, legacy=version)
    raise StoreError(
        f"database {label} has schema version {version} and no Alembic revision; this "
        "probe reads and upgrades versions 1 and 2 of those, and every revision up to "
        f"{head()}: if a newer probe wrote it, upgrade the probe"
    )


def check_readable(engine: Engine, label: str) -> None:
    """Refuse, without writing, a database this probe cannot read as it is."""
    with engine.connect() as conn:
        if find(conn, label).new:
            raise StoreError(f"database {label} has no probe tables (no schema version)")


def bring_to_head(engine: Engine, label: str, file: Path | None) -> Upgrade | None:
    """Create a new database at the head, or upgrade an older one (after a backup of a file)."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # Off while a revision rebuilds a table (dropping the old one must not touch the
            # rows that point at it); checked before commit. A no-op inside a transaction.
            conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
            conn.commit()
        try:
            with conn.begin():
                if sqlite:
                    # pysqlite runs DDL outside any transaction; an explicit (write-locking)
                    # BEGIN makes the whole upgrade atomic, and a second opener waits for it.
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                upgrade = _upgrade(conn, label, file)
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys = ON")
                conn.commit()
    if upgrade is not None:
        log.warning("%s", upgrade.message())
    return upgrade


def _upgrade(conn: Connection, label: str, file: Path | None) -> Upgrade | None:
    """Inside the write transaction: bring the schema to the head; what was upgraded."""
    found = find(conn, label)
    target = head()
    if found.new:
        _create_at_head(conn)
        return None
    if found.revision == target:
        return None
    from alembic import command  # only to upgrade (see migrations.REVISIONS)

    config = alembic_config(conn)
    if found.legacy == "1" and conn.dialect.name != "sqlite":
        raise StoreError(f"database {label} has schema version 1, which only SQLite upgrades")
    backup = _backup(file, target) if file is not None else None
    if found.legacy == "1":
        _rebuild_runs_of_schema_1(conn)
    if found.legacy is not None:
        command.stamp(config, BEFORE_ALEMBIC)
    command.upgrade(config, "head")
    if conn.dialect.name == "sqlite":
        if conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
            raise StoreError(f"database {label}: upgrading it broke a link between tables")
    return Upgrade(label, found.describe(), target, backup)


def _create_at_head(conn: Connection) -> None:
    """A new database: the models' tables (partitioned by month on PostgreSQL: the shape
    revision 0005p gives; on SQLite results and inputs behind the measurements view, as
    0006c), the views, the schema version, the head's stamp."""
    metadata_for(conn.dialect.name).create_all(conn)
    if conn.dialect.name == "postgresql":
        create_defaults(conn)
    if conn.dialect.name == compact.DIALECT:
        compact.create_view(conn)  # measurements, as revision 0006c creates it (compact.py)
    create_views(conn)  # as revision 0004v creates them (views.py: one definition)
    conn.execute(insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
    _ALEMBIC_VERSION.create(conn)
    conn.execute(insert(_ALEMBIC_VERSION).values(version_num=HEAD))


def _backup(database: Path, revision: str) -> Path:
    """Copy the file's committed state beside it; the caller holds the write lock."""
    final = backup_path(database, revision)
    partial = final.with_name(final.name + ".partial")
    # A second, read-only connection: SQLite refuses to back up from a connection that is
    # in a write transaction, and this one reads what was committed, which is what the
    # upgrade is about to change.
    source = f"file:{urllib.parse.quote(str(database))}?mode=ro"
    try:
        with (
            contextlib.closing(sqlite3.connect(source, uri=True)) as src,
            contextlib.closing(sqlite3.connect(partial)) as dst,
        ):
            src.backup(dst)
            # One self-contained file: no -wal or -shm needed beside the copy.
            dst.execute("PRAGMA journal_mode = DELETE")
        os.replace(partial, final)
        _sync_directory(final.parent)
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise StoreError(
            f"cannot back up database {database} to {final} before upgrading it "
            f"(nothing was changed): {exc}"
        ) from exc
    return final


def _sync_directory(directory: Path) -> None:
    """Make the backup's name durable (the copy itself was synced by SQLite's commit)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rebuild_runs_of_schema_1(conn: Connection) -> None:
    """Schema 1 to 2: rebuild runs, whose CHECK now allows "failed" and "aborted".

    SQLite cannot alter a CHECK constraint. This is SQLite's documented rebuild (rename,
    create, copy, drop) with foreign keys off, so the measurements that point at runs stay
    put; it runs in the upgrade's transaction, so a crash leaves schema 1 whole.
    """
    # Imports Alembic (op): only here, to upgrade (see migrations.REVISIONS).
    from probe.store.migrations.versions import rev0001_schema_2 as schema_2

    # Legacy renaming leaves measurements' REFERENCES runs pointing at the new table.
    conn.exec_driver_sql("PRAGMA legacy_alter_table = ON")
    try:
        conn.exec_driver_sql("ALTER TABLE runs RENAME TO runs_v1")
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_runs_started_at")
        # Revision 0001's runs, not the models' (which may have moved on since).
        runs = Table("runs", MetaData(), *schema_2.runs_columns())
        Index("ix_runs_started_at", runs.c.started_at)
        runs.create(conn)
        columns = ", ".join(c.name for c in runs.columns)
        conn.exec_driver_sql(f"INSERT INTO runs ({columns}) SELECT {columns} FROM runs_v1")
        conn.exec_driver_sql("DROP TABLE runs_v1")
        conn.execute(update(Meta).where(Meta.c.key == "schema_version").values(value="2"))
    finally:
        conn.exec_driver_sql("PRAGMA legacy_alter_table = OFF")
