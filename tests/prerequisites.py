"""What a test does when this machine lacks what it needs: skip, except under CI."""

from __future__ import annotations

import os

import pytest


def missing(reason: str) -> None:
    """Skip with ``reason``; under CI=true fail instead (CI must run every test)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing prerequisite is a failure)", pytrace=False)
    pytest.skip(reason)
