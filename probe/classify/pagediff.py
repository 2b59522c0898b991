"""Whether two pages are the same page: rule 6's comparison (status, title, body length).

One comparison for every pair the rules hold side by side: the probe's page and the control
helper's copy (``http``), the page at the resolver's address and the page at DoH's, the page
for the target's name and for an innocuous one at the same address (``middlebox``).
"""

from __future__ import annotations

from dataclasses import dataclass

from measurements.observations import HTTPHop

# As the best-known probe does: a length far from the control's only counts with a title that
# differs too, since localised pages change titles but rarely their size.
_LENGTH_RATIO = 0.7


@dataclass(frozen=True, slots=True)
class Page:
    """What the comparison reads of one page."""

    status: int | None
    title: str | None
    body_length: int | None
    # A read cut short (by the cap, or by asking for part of a large resource: 206 to our
    # Range) says how much was read, not how long the page is.
    partial: bool = False

    @classmethod
    def of(cls, hop: HTTPHop) -> Page:
        """One hop's page; 206 is the answer to our Range, the same resource as a whole 200."""
        status = 200 if hop.status == 206 else hop.status
        return cls(status, hop.title, hop.body_length, hop.status == 206 or hop.truncated)


def _ratio(a: Page, b: Page) -> float:
    if not a.body_length or not b.body_length or a.partial or b.partial:
        return 1.0
    return min(a.body_length, b.body_length) / max(a.body_length, b.body_length)


def differs(page: Page, control: Page) -> str | None:
    """How ``page`` differs from ``control`` ("another status.", ...), or None: the same."""
    if page.status != control.status:
        return "another status."
    if _ratio(page, control) < _LENGTH_RATIO and page.title != control.title:
        return "another title and length."
    return None


def same_page(a: Page, b: Page) -> bool:
    """Positively the same page: status and title equal, lengths within the diff's margin.

    Stricter than "no difference", which lets a localised title or a resized page pass: this
    is used as proof (one page whatever name is asked), so every measure must agree.
    """
    return a.status == b.status and a.title == b.title and _ratio(a, b) >= _LENGTH_RATIO
