"""``probe collector``: serve uploads into a central PostgreSQL, and manage the probes' tokens.

``serve`` and ``token`` take the database as ``--db`` (a SQLAlchemy URL; the collector's
schema is the probe's own, created or upgraded at the first open).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from measurements.addresses import split_host_port
from probe.cli.errors import UsageError
from probe.cli.render import print_json

if TYPE_CHECKING:  # the store is imported when the command runs (probe/cli/__init__.py)
    from probe.store.database import Database


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser("collector", help="the central collector: serve uploads, manage tokens")
    csub = p.add_subparsers(dest="collector_command", required=True)
    sp = csub.add_parser("serve", help="accept probes' uploads over HTTP into the database")
    _add_db(sp)
    sp.add_argument("--listen", default="127.0.0.1:8090", metavar="ADDR:PORT",
                    help="where to listen (default 127.0.0.1:8090; put TLS in front)")  # fmt: skip
    sp.add_argument("--max-body", type=int, default=8 << 20, metavar="BYTES",
                    help="largest upload as sent, compressed (default 8 MiB)")  # fmt: skip
    sp.add_argument("--rate", type=float, default=5.0, metavar="N",
                    help="uploads a second per token (default 5; bursts of 4x)")  # fmt: skip
    sp.add_argument("--concurrency", type=int, default=32, metavar="N",
                    help="uploads handled at once; more get 503 (default 32)")  # fmt: skip
    sp.add_argument("--read-timeout", type=float, default=30.0, metavar="SECONDS",
                    help="seconds a client has to send a whole upload (default 30)")  # fmt: skip
    sp.set_defaults(handler=serve)
    tp = csub.add_parser("token", help="add, revoke or list the probes' upload tokens")
    tsub = tp.add_subparsers(dest="token_command", required=True)
    add = tsub.add_parser("add", help="make a token for a probe (printed once, kept hashed)")
    add.add_argument("name", help="the probe's name (runs.uploaded_by)")
    revoke = tsub.add_parser("revoke", help="refuse a token's uploads from now on")
    revoke.add_argument("name")
    listing = tsub.add_parser("list", help="names, created, revoked (never the tokens)")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    for parser in (add, revoke, listing):
        _add_db(parser)
        parser.set_defaults(handler=token)


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, metavar="URL",
                   help="the central database: postgresql+psycopg://USER@HOST/DB")  # fmt: skip


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise UsageError(f"{name}: must be more than 0, got {value:g}")


def serve(args: argparse.Namespace) -> int:
    """Check the flags, open (create or upgrade) the database, serve until interrupted."""
    from probe.collector.app import ServeSettings
    from probe.collector.app import serve as serve_app
    from probe.store.database import open_database

    try:
        host, port = split_host_port(args.listen)
    except ValueError as exc:
        raise UsageError(f"--listen {args.listen}: {exc}") from None
    for name in ("max_body", "rate", "concurrency", "read_timeout"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    settings = ServeSettings(
        max_body=args.max_body, rate=args.rate, burst=max(1, int(args.rate * 4)),
        concurrency=args.concurrency, read_timeout=args.read_timeout,
    )  # fmt: skip
    db = open_database(args.db)
    try:
        asyncio.run(serve_app(db, host or "127.0.0.1", port, settings))
    except OSError as exc:
        raise UsageError(f"--listen {args.listen}: {exc.strerror or exc}") from None
    finally:
        db.close()
    return 0


def token(args: argparse.Namespace) -> int:
    """token add, revoke, list."""
    from probe.collector import tokens
    from probe.store.database import open_database

    if args.token_command == "add":
        try:
            tokens.check_name(args.name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    db = open_database(args.db)
    try:
        return _token(db, args)
    finally:
        db.close()


def _token(db: Database, args: argparse.Namespace) -> int:
    from probe.collector import tokens

    if args.token_command == "add":
        print(tokens.add(db, args.name))
        print(f"probe: the token of {args.name!r} is shown this once; the collector keeps "
              "only its hash", file=sys.stderr)  # fmt: skip
        return 0
    if args.token_command == "revoke":
        if not tokens.revoke(db, args.name):
            raise UsageError(f"no live token named {args.name!r}")
        print(f"revoked {args.name}")
        return 0
    rows = tokens.list_tokens(db)
    if args.json:
        print_json("collector-tokens", {"tokens": [
            {"name": t.name, "created_at": t.created_at.isoformat(),
             "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None} for t in rows
        ]})  # fmt: skip
        return 0
    for t in rows:
        revoked = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "live"
        print(f"{t.name:<32} created {t.created_at:%Y-%m-%d %H:%M}  {revoked}")
    return 0
