"""One module per revision (Alembic reads them by file; this file makes them package data)."""
