"""Rule 7's escalation of a page that finished: far slower than the references' pages."""

from __future__ import annotations

import pytest

from measurements.observations import HTTPHop, HTTPTimings
from probe.classify.trials import PAGE_MIN_BYTES, far_slower_than_references, page_kbps

KIB = 1024


def _page(length: int, body_ms: float, status: int = 200, failure: str | None = None) -> HTTPHop:
    timings = HTTPTimings(first_byte_ms=10.0, total_ms=10.0 + body_ms)
    return HTTPHop(
        "https://x.example/", "198.18.1.1", failure, "http_body" if failure else None, status,
        (), None, None, length, "00", b"", False, "TLSv1.3", None, timings,
    )  # fmt: skip


def test_a_page_rate_is_its_body_from_headers_to_end() -> None:
    assert page_kbps(_page(100_000, 1000.0)) == pytest.approx(800.0)
    # Too short to time (its "rate" is latency), not 2xx, broken, or not timed at all.
    assert page_kbps(_page(PAGE_MIN_BYTES - 1, 1000.0)) is None
    assert page_kbps(_page(100_000, 1000.0, status=404)) is None
    assert page_kbps(_page(100_000, 1000.0, failure="connection_reset")) is None
    assert page_kbps(_page(100_000, 0.0)) is None
    assert page_kbps(None) is None


@pytest.mark.parametrize(
    ("page", "references", "escalates"),
    [
        # 800 kbit/s against 8 Mbit/s: a tenth.
        (_page(100 * KIB, 1024.0), [_page(100 * KIB, 102.4)], True),
        # The fastest reference decides: one slow reference does not hide a fast one.
        (_page(100 * KIB, 1024.0), [_page(100 * KIB, 2048.0), _page(100 * KIB, 100.0)], True),
        # Exactly a quarter still counts; a third does not.
        (_page(100 * KIB, 400.0), [_page(100 * KIB, 100.0)], True),
        (_page(100 * KIB, 300.0), [_page(100 * KIB, 100.0)], False),
        # No reference long enough to time, or none at all: nothing to compare with.
        (_page(100 * KIB, 1024.0), [_page(8 * KIB, 1.0)], False),
        (_page(100 * KIB, 1024.0), [], False),
        # A short page is never escalated, however slow.
        (_page(8 * KIB, 5000.0), [_page(100 * KIB, 10.0)], False),
    ],
)
def test_escalation_needs_a_page_far_slower_than_a_reference(
    page: HTTPHop, references: list[HTTPHop], escalates: bool
) -> None:
    assert far_slower_than_references(page, references) is escalates
