"""The store's one error type: every database failure leaves the store as StoreError.

Its own module so that each part of the store (opening, schema, queries) raises the same
class without importing the others; the message names the database and, where the driver
gave one, the driver's own reason (shorter than SQLAlchemy's wrapper, which adds the SQL).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, SQLAlchemyError


class StoreError(Exception):
    """The database cannot be opened, has the wrong schema, or a read or write failed."""


def reason(exc: SQLAlchemyError) -> str:
    """The driver's message when there is one (shorter than SQLAlchemy's wrapper)."""
    return str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
