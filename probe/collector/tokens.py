"""The collector's upload tokens: one per probe, shown once, stored as its SHA-256.

A token is 32 random bytes (URL-safe base64). Only its hash is kept, so a copy of the
database cannot upload; a revoked token stays listed (its name stays taken: the rows it
uploaded keep naming it in ``runs.uploaded_by``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from probe.store.database import Database
from probe.store.errors import StoreError
from probe.store.models import CollectorToken

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as ``probe collector token list`` shows it: never the token itself."""

    name: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def token_hash(token: str) -> str:
    """What the collector keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    """A token's name: letters, digits, ``.``, ``_``, ``-``, at most 64 (ValueError if not)."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"token name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', not starting "
            "with a punctuation mark"
        )
    return name


def add(db: Database, name: str) -> str:
    """A new token named ``name``; returns the token (shown once, never kept)."""
    check_name(name)
    token = secrets.token_urlsafe(32)
    row = {"name": name, "token_hash": token_hash(token), "created_at": dt.datetime.now(dt.UTC)}
    with db.begin("token add") as conn:
        try:
            conn.execute(insert(CollectorToken).values(**row))
        except IntegrityError:
            raise StoreError(
                f"a token named {name!r} exists already (names are never reused)"
            ) from None
    return token


def revoke(db: Database, name: str) -> bool:
    """Revoke the token; False if there is no such (unrevoked) token."""
    now = dt.datetime.now(dt.UTC)
    stmt = (
        update(CollectorToken)
        .where(CollectorToken.c.name == name, CollectorToken.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    with db.begin("token revoke") as conn:
        return bool(conn.execute(stmt).rowcount)


def list_tokens(db: Database) -> list[TokenInfo]:
    """Every token, oldest first."""
    stmt = select(CollectorToken.c.name, CollectorToken.c.created_at, CollectorToken.c.revoked_at)
    with db.connect("token list") as conn:
        rows = conn.execute(stmt.order_by(CollectorToken.c.id)).all()
    return [TokenInfo(r.name, r.created_at, r.revoked_at) for r in rows]


def holder(db: Database, token: str) -> str | None:
    """The name of the live token ``token`` is, or None (unknown or revoked)."""
    stmt = select(CollectorToken.c.name).where(
        CollectorToken.c.token_hash == token_hash(token), CollectorToken.c.revoked_at.is_(None)
    )
    with db.connect("token check") as conn:
        return conn.execute(stmt).scalar_one_or_none()
