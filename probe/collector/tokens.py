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
    with db.session("token add") as session, session.begin():
        try:
            session.execute(insert(CollectorToken).values(**row))
            session.flush()
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
        .where(CollectorToken.name == name, CollectorToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    with db.session("token revoke") as session, session.begin():
        return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def list_tokens(db: Database) -> list[TokenInfo]:
    """Every token, oldest first."""
    stmt = select(CollectorToken.name, CollectorToken.created_at, CollectorToken.revoked_at)
    with db.session("token list") as session:
        rows = session.execute(stmt.order_by(CollectorToken.id)).all()
    return [TokenInfo(r.name, r.created_at, r.revoked_at) for r in rows]


def holder(db: Database, token: str) -> str | None:
    """The name of the live token ``token`` is, or None (unknown or revoked)."""
    stmt = select(CollectorToken.name).where(
        CollectorToken.token_hash == token_hash(token), CollectorToken.revoked_at.is_(None)
    )
    with db.session("token check") as session:
        return session.execute(stmt).scalar_one_or_none()
