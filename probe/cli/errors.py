"""Errors the CLI reports as bad usage (exit 2)."""


class UsageError(ValueError):
    """Arguments that parse but cannot be used together or as given."""
