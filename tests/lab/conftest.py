"""The lab, built once per test session and torn down at its end.

Without root, iproute2, iptables or tc the lab tests are skipped with the reason; under
CI=true the same lack is a failure, so a CI machine that cannot run the lab never passes
silently.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import prerequisites
from tests.lab import topology


def require_lab() -> None:
    """Skip (or, in CI, fail) when this machine cannot build the lab."""
    missing = topology.missing_prerequisites()
    if not missing:
        return
    prerequisites.missing("the censorship lab needs " + ", ".join(missing))


@pytest.fixture(scope="session")
def lab() -> Iterator[topology.Lab]:
    """The running lab (reset to no censor between scenarios by the runner)."""
    require_lab()
    built = topology.up()
    try:
        yield built
    finally:
        topology.down()
